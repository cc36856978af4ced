"""Periodic work nobody watches (the watchdog, the daily prune) does not fail in silence:
Home says which work fails and why until it works again, and Home itself keeps working
when the task queue does not answer."""

import datetime

import pytest
from django.utils import timezone
from huey.contrib.djhuey import HUEY
from huey.storage import RedisStorage, SqliteStorage

from app.models import Lease, Status, StepRun
from app.runs import engine
from app.runs.worker import Job, WorkerBeat

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queue_gone(tmp_path, monkeypatch):
    """Make the task queue's storage unreachable for real; undone when the test ends or
    when the returned function is called."""
    HUEY.flush()  # tasks left by earlier tests
    real = HUEY.storage
    if isinstance(real, SqliteStorage):
        gone = SqliteStorage(name=HUEY.name, filename=str(tmp_path / "gone" / "queue.db"), create_tables=False)
    else:
        gone = RedisStorage(name=HUEY.name, url="redis://127.0.0.1:1/0")
    monkeypatch.setattr(HUEY, "storage", gone)
    yield lambda: monkeypatch.setattr(HUEY, "storage", real)
    real.flush_queue()  # what the test queued is not left for the next one


def test_a_watchdog_that_cannot_reach_the_queue_is_reported_on_home_until_it_works(operator_client, queue_gone):
    # A run whose first step's task was lost five minutes ago: the watchdog must queue it again.
    run, _ready = engine.start_run("flaky_demo", {})
    StepRun.objects.filter(run=run, status=Status.QUEUED).update(queued_at=timezone.now() - datetime.timedelta(minutes=5))
    beat = WorkerBeat("default", 1)

    beat.watch()

    page = operator_client.get("/dashboard/").content.decode()
    assert "Periodic work that is failing" in page
    assert "Finding steps whose worker died or whose task was lost" in page
    why = "OperationalError" if isinstance(HUEY.storage, SqliteStorage) else "ConnectionError"
    assert why in page and beat.name in page
    assert "the task queue does not answer" in page  # the queue tile, not a 500
    lease = Lease.objects.get(name="watchdog")
    assert lease.problem.startswith(why) and lease.problem_since and lease.done_at is None

    queue_gone()  # the queue is back: the next period's watchdog works, and Home says nothing
    Lease.objects.filter(name="watchdog").update(period=0)
    beat.watch()

    page = operator_client.get("/dashboard/").content.decode()
    assert "Periodic work that is failing" not in page and "the task queue does not answer" not in page
    lease.refresh_from_db()
    assert lease.problem == "" and lease.problem_since is None and lease.done_at is not None
    assert HUEY.pending_count() == 1  # the stranded step is queued at last


def test_a_failing_job_keeps_the_time_it_first_failed(operator_client):
    def full_disk():
        raise OSError(28, "No space left on device")

    beat = WorkerBeat("default", 1, jobs=(Job("prune", lambda: 86400, full_disk),))
    beat.watch()
    first = Lease.objects.get(name="prune")
    Lease.objects.filter(name="prune").update(period=0)
    beat.watch()

    again = Lease.objects.get(name="prune")
    assert again.problem == "OSError: [Errno 28] No space left on device"
    assert again.problem_since == first.problem_since and again.taken_at > first.taken_at
    page = operator_client.get("/dashboard/").content.decode()
    assert "The daily prune" in page and "No space left on device" in page
