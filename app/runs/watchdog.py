"""Finding steps whose worker died.

A worker marks the step runs it is running as alive every STEP_HEARTBEAT_SECONDS
(app.runs.heartbeat). A running step run whose mark is older than STEP_LOST_AFTER_SECONDS
lost its worker (killed, machine gone): `rescue_lost_steps` keeps what that attempt printed
as a StepAttempt and puts the step back on the queue. Airflow calls these zombies. A lost
attempt counts like a failed one: once a step has lost more attempts than its retries allow
(at least STEP_LOST_RETRIES), it fails, so a step that takes its worker down cannot loop.
"""

import datetime
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from app import artifacts
from app.models import Status, StepRun, WorkerHeartbeat
from app.runs import engine, statements

log = logging.getLogger(__name__)
# In the error of every attempt the watchdog takes back (app.ops.metrics counts them by it).
RESCUED = "stopped responding"




def rescue_lost_steps() -> list[int]:
    """Put running step runs whose worker stopped beating back on the queue, or fail them
    when they have used up their attempts; returns the ids to enqueue. Conditional on the
    stale heartbeat, so a worker that comes back to life and a second watchdog cannot both win."""
    now = timezone.now()
    cutoff = now - datetime.timedelta(seconds=settings.STEP_LOST_AFTER_SECONDS)
    rescued = []
    lost = StepRun.objects.filter(status=Status.RUNNING, heartbeat_at__lt=cutoff)
    # Workers whose own sign of life is recent (app.runs.worker) are alive: their steps'
    # marks stopped because the database was unreachable, not because they died, and resume.
    alive = set(WorkerHeartbeat.objects.filter(last_seen__gte=cutoff).values_list("name", flat=True))
    for step_run in lost.select_related("run__snapshot").defer("run__snapshot__layout_svg"):
        if step_run.worker.rsplit(":", 1)[0] in alive:
            continue
        this_attempt = StepRun.objects.filter(pk=step_run.pk, status=Status.RUNNING, heartbeat_at=step_run.heartbeat_at)
        if step_run.run.cancel_requested_at:
            with transaction.atomic():
                # The run was being cancelled anyway: the lost step counts as stopped.
                if this_attempt.update(status=Status.CANCELLED, finished_at=now, error="stopped: its worker died"):
                    engine.stopped(step_run, now)
            continue
        # What the lost attempt printed, as far as it got (its log file survives the worker).
        log_text = artifacts.log_tail(artifacts.log_path(step_run.run_id, step_run.step_name, step_run.attempt))
        ready = engine.hand_over(
            step_run, log_text, f"worker {step_run.worker} {RESCUED} (it died, or lost the database)",
            heartbeat_at=step_run.heartbeat_at,
        )
        log.warning("step run %s lost its worker %s; %s", step_run.pk, step_run.worker,
                    "queued again" if ready else "failed, or taken care of elsewhere")
        rescued.extend(ready)
    return rescued


def close_finished_runs():
    """Close runs whose steps all finished but whose worker died before it closed them."""
    for run_id in statements.close_finished_runs(timezone.now()):
        log.warning("run %s had finished all its steps but was not closed (its worker died); closed now", run_id)
