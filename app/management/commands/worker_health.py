"""A probe for orchestrators (a Kubernetes liveness or readiness probe, Docker's HEALTHCHECK):
exit 0 when a worker of this machine has written its sign of life recently and is not
shutting down, else 1 with one line saying what is wrong."""

import sys

from django.core.management.base import BaseCommand
from django.db import DatabaseError

from app.ops import health
from app.runs.worker import dead_after


class Command(BaseCommand):
    help = "Exit 0 if a worker on this machine (or the worker process --pid) is alive, else 1."

    def add_arguments(self, parser):
        parser.add_argument("--pid", type=int, help="Check this worker process only")
        parser.add_argument("--host", help="Check the workers of this host name (default: this machine's)")

    def handle(self, pid=None, host=None, **options):
        try:
            alive = health.live_workers_here(host=host, pid=pid)
        except DatabaseError as exc:
            self.stderr.write(f"unhealthy: the database does not answer ({type(exc).__name__})")
            sys.exit(1)
        which = f"worker process {pid}" if pid else f"worker on {host or 'this machine'}"
        if not alive:
            self.stderr.write(
                f"unhealthy: no {which} has written its sign of life in the last "
                f"{dead_after().total_seconds():g} s (stopped, stuck, shutting down, or cannot reach the database)"
            )
            sys.exit(1)
        newest = min(health.seconds_since(worker.last_seen) for worker in alive)
        self.stdout.write(f"healthy: {len(alive)} worker(s), last sign of life {newest:.0f} s ago")
