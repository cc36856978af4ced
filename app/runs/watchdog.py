"""Finding steps whose worker died.

A worker marks the step runs it is running as alive every STEP_HEARTBEAT_SECONDS, from one
daemon thread. A running step run whose mark is older than STEP_LOST_AFTER_SECONDS lost its
worker (killed, machine gone): `rescue_lost_steps` keeps what that attempt printed as a
StepAttempt and puts the step back on the queue. Airflow calls these zombies.
"""

import datetime
import logging
import threading
import time

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from app.models import Status, StepAttempt, StepRun
from app.runs import statements

log = logging.getLogger(__name__)


class Heartbeat:
    """Marks the step runs this process is running as alive, from one daemon thread."""

    def __init__(self):
        self.step_run_ids = set()
        self.lock = threading.Lock()
        self.thread = None

    def add(self, step_run_id):
        with self.lock:
            self.step_run_ids.add(step_run_id)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._beat, name="step-heartbeat", daemon=True)
                self.thread.start()

    def discard(self, step_run_id):
        with self.lock:
            self.step_run_ids.discard(step_run_id)

    def _beat(self):
        while True:
            time.sleep(settings.STEP_HEARTBEAT_SECONDS)
            with self.lock:
                ids = list(self.step_run_ids)
            if not ids:
                continue
            try:
                StepRun.objects.filter(pk__in=ids, status=Status.RUNNING).update(heartbeat_at=timezone.now())
            except Exception:
                # A locked or lost database must not end the thread; the next beat retries.
                log.exception("could not record the heartbeat of step runs %s", ids)
            finally:
                connection.close()


heartbeat = Heartbeat()


def rescue_lost_steps() -> list[int]:
    """Put running step runs whose worker stopped beating back on the queue; returns
    their ids for the caller to enqueue. Conditional on the stale heartbeat, so a worker
    that comes back to life and a second watchdog cannot both win."""
    now = timezone.now()
    cutoff = now - datetime.timedelta(seconds=settings.STEP_LOST_AFTER_SECONDS)
    rescued = []
    lost = StepRun.objects.filter(status=Status.RUNNING, heartbeat_at__lt=cutoff)
    fields = ("pk", "run_id", "heartbeat_at", "worker", "attempt", "started_at", "log", "run__cancel_requested_at")
    for step_run in lost.select_related("run").only(*fields):
        this_attempt = StepRun.objects.filter(pk=step_run.pk, status=Status.RUNNING, heartbeat_at=step_run.heartbeat_at)
        with transaction.atomic():
            if step_run.run.cancel_requested_at:
                # The run was being cancelled anyway: the lost step counts as stopped.
                if this_attempt.update(status=Status.CANCELLED, finished_at=now, error="stopped: its worker died"):
                    statements.finish_steps(step_run.run_id, 1, now)
                continue
            error = f"worker {step_run.worker} stopped responding; the step was queued again"
            if not this_attempt.update(status=Status.QUEUED, queued_at=now, log="", error=error):
                continue
            StepAttempt.objects.create(
                step_run=step_run, number=step_run.attempt, status=Status.FAILED, started_at=step_run.started_at,
                finished_at=now, worker=step_run.worker, log=step_run.log, error=error,
            )
        log.warning("step run %s lost its worker %s; queued again", step_run.pk, step_run.worker)
        rescued.append(step_run.pk)
    return rescued


