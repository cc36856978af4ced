"""Is this installation able to work: for load balancers (`/healthz`) and for the probes of
orchestrators (`manage.py worker_health`)."""

import datetime
import logging
import socket

from django.db import connection
from django.utils import timezone
from huey.contrib.djhuey import HUEY

from app.models import WorkerHeartbeat
from app.runs.worker import dead_after

log = logging.getLogger(__name__)


def checks() -> dict[str, bool]:
    """Each part the site needs, and whether it answers: the database and the task queue.
    Why a part failed is logged here, never returned (the endpoint answering is public)."""
    return {"database": _database(), "queue": _queue()}


def _database() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception as exc:  # noqa: BLE001 — any failure means unhealthy
        log.warning("health: the database does not answer (%s: %s)", type(exc).__name__, exc)
        connection.close_if_unusable_or_obsolete()
        return False


def _queue() -> bool:
    try:
        HUEY.pending_count()  # a read of the queue's storage (the SQLite file, or Redis)
        return True
    except Exception as exc:  # noqa: BLE001
        log.warning("health: the task queue does not answer (%s: %s)", type(exc).__name__, exc)
        return False


def live_workers_here(host: str | None = None, pid: int | None = None) -> list[WorkerHeartbeat]:
    """The workers of this machine (or of `host`; or the one process `pid`) whose own sign
    of life is recent and that are not shutting down."""
    host = host or socket.gethostname()
    name = f"{host}:{pid}" if pid else None
    recent = WorkerHeartbeat.objects.filter(last_seen__gte=timezone.now() - dead_after(), stopping=False)
    rows = recent.filter(name=name) if name else recent.filter(name__startswith=f"{host}:")
    return list(rows)


def seconds_since(moment: datetime.datetime) -> float:
    return (timezone.now() - moment).total_seconds()
