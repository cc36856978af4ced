"""What a worker process does besides running steps, from one thread of its own.

Every WORKER_BEAT_SECONDS the thread records the worker's sign of life (WorkerHeartbeat:
host:pid, the queue it serves, its threads, the code of each pipeline it has loaded, and
whether it is draining after SIGTERM), and tries for the lease of each periodic job: the
worker that gets a period's lease (app.runs.leases) does that job, so it is done once per
period however many workers there are. The watchdog's job, every beat, puts lost and
stranded steps back on their queues and forgets workers silent for a day (a lost step is
found within STEP_LOST_AFTER_SECONDS plus a period); higher layers add theirs (run_huey
adds the daily prune). A job that fails records why on its lease, which Home shows until
the job works again: work nobody watches does not fail in silence.
"""

import datetime
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from app.models import WorkerHeartbeat
from app.pipelines.registry import registry
from app.runs import leases, supervisor, tasks, watchdog

log = logging.getLogger(__name__)

FORGET_AFTER = datetime.timedelta(days=1)


def beat_seconds() -> float:
    return min(settings.STEP_HEARTBEAT_SECONDS, settings.WORKER_BEAT_SECONDS)


def dead_after() -> datetime.timedelta:
    """A worker silent for this long is shown as dead."""
    return datetime.timedelta(seconds=3 * beat_seconds() + 5)


@dataclass(frozen=True)
class Job:
    """Periodic work done by one worker per period of `seconds` (a callable: settings may
    change in tests)."""

    name: str
    seconds: Callable[[], float]
    work: Callable[[], None]


def watchdog_work():
    tasks.enqueue(watchdog.rescue_lost_steps())
    watchdog.close_finished_runs()
    tasks.enqueue(tasks.stranded_steps())
    WorkerHeartbeat.objects.filter(last_seen__lt=timezone.now() - FORGET_AFTER).delete()


WATCHDOG = Job("watchdog", lambda: settings.WORKER_BEAT_SECONDS, watchdog_work)


def describe(exc: BaseException) -> str:
    return supervisor.describe_exception(exc).splitlines()[0][:300]


class WorkerBeat:
    def __init__(self, queue: str, threads: int, jobs: tuple[Job, ...] = ()):
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.queue = queue
        self.threads = threads
        self.jobs = (WATCHDOG, *jobs)
        self.started_at = timezone.now()
        self.stopping = False
        self.failures = 0
        self.wake = threading.Event()

    def start(self):
        threading.Thread(target=self._loop, name="worker-beat", daemon=True).start()

    def drain(self):
        """Say at once that this worker takes no new steps (SIGTERM)."""
        self.stopping = True
        self.wake.set()

    def _loop(self):
        while True:
            try:
                self.beat()
                self.watch()
                if self.failures:
                    log.warning("worker beat: the database works again after %d failed tries", self.failures)
                self.failures = 0
            except (DatabaseError, OSError) as exc:
                self.failures += 1
                log.warning("worker beat: the database or disk failed (%s); next try in %g s", describe(exc), beat_seconds())
            except Exception:
                log.exception("worker beat failed; next try in %g s", beat_seconds())
            finally:
                connection.close()
            self.wake.wait(beat_seconds())
            self.wake.clear()

    def beat(self):
        code = {name: pipe.snapshot()["source_hash"] for name, pipe in registry.pipelines().items()}
        WorkerHeartbeat.objects.update_or_create(name=self.name, defaults={
            "last_seen": timezone.now(), "started_at": self.started_at, "queue": self.queue,
            "threads": self.threads, "code": code, "stopping": self.stopping,
        })

    def watch(self):
        """Do each periodic job whose lease this worker gets for the current period."""
        for job in self.jobs:
            if self.stopping or not leases.take(job.name, int(time.time() // job.seconds()), self.name):
                continue
            try:
                job.work()
            except Exception as exc:
                log.exception("periodic job %r failed", job.name)
                leases.failed(job.name, describe(exc))  # the database down too: _loop logs it
            else:
                leases.done(job.name)
