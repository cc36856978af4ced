"""A worker killed in the middle of a step: the step is found, queued again and finished."""

import signal

import pytest
from django.test import override_settings

from app.models import Run, Status
from app.runs import tasks, watchdog
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

FAST_HEARTBEAT = {"STEP_HEARTBEAT_SECONDS": "0.2", "STEP_LOST_AFTER_SECONDS": "1.5"}


@override_settings(STEP_LOST_AFTER_SECONDS=1.5)
def test_it_finishes_a_run_whose_worker_was_killed(start_worker):
    first = start_worker(**FAST_HEARTBEAT)
    run = tasks.trigger("fanout_demo", {"rows": "100", "pause": "2"}, source="cli")
    wait_for(
        lambda: run.step_runs.filter(status=Status.RUNNING, step_name__in=["total", "mean", "spread"]).count() == 3,
        message="the three summary steps to be running",
    )

    first.send_signal(signal.SIGKILL)
    first.wait()
    lost = wait_for(watchdog.rescue_lost_steps, timeout=10, message="the watchdog to notice the dead worker")
    tasks.enqueue(lost)
    second = start_worker(**FAST_HEARTBEAT)

    run = wait_for(lambda: Run.objects.filter(pk=run.pk, status__in=["succeeded", "failed"]).first(), timeout=60,
                   message="the run to finish on the second worker")
    assert run.status == Status.SUCCEEDED
    rescued = run.step_runs.filter(step_name__in=["total", "mean", "spread"])
    assert sorted(sr.step_name for sr in rescued if sr.attempt == 2) == ["mean", "spread", "total"]
    for step_run in rescued:
        assert f":{second.pid}:" in step_run.worker
        lost_attempt = step_run.attempts.get()
        assert (lost_attempt.number, lost_attempt.status) == (1, Status.FAILED)
        assert f":{first.pid}:" in lost_attempt.worker and "stopped responding" in lost_attempt.error
