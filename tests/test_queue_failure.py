"""When the task queue refuses a new run's first steps after the run was committed (its disk is
full, Redis is down), the operator is told at once and the run is failed: it never starts
later behind their back."""

import pytest
from huey.contrib.djhuey import HUEY
from huey.storage import RedisStorage, SqliteStorage

from app.models import Run, Status
from app.runs import engine, tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queue(tmp_path, monkeypatch):
    """The task queue's storage, made unreachable for real (`gone`): a SQLite file in a
    directory that does not exist, or a Redis port nothing listens on; `back` restores it."""

    HUEY.flush()  # tasks left by earlier tests

    class Queue:
        real = HUEY.storage
        sqlite = isinstance(HUEY.storage, SqliteStorage)

        def gone(self):
            if self.sqlite:
                storage = SqliteStorage(name=HUEY.name, filename=str(tmp_path / "gone" / "queue.db"), create_tables=False)
            else:
                storage = RedisStorage(name=HUEY.name, url="redis://127.0.0.1:1/0")
            monkeypatch.setattr(HUEY, "storage", storage)

        def back(self):
            monkeypatch.setattr(HUEY, "storage", self.real)

    return Queue()


def test_a_run_the_queue_refuses_fails_at_once_and_never_runs_later(operator_client, queue):
    queue.gone()
    response = operator_client.post("/pipelines/fanout_demo/run/", {"rows": "5", "seed": "7", "pause": "0"}, follow=True)

    run = Run.objects.get()
    assert response.status_code == 200 and response.redirect_chain[-1][0] == f"/runs/{run.pk}/"
    page = response.content.decode()
    assert f"Run #{run.pk} of fanout_demo could not be started: the task queue refused it" in page
    assert "will not run later" in page
    run.refresh_from_db()
    assert run.status == Status.FAILED and run.finished_at is not None
    steps = {sr.step_name: sr for sr in run.step_runs.all()}
    why = "OperationalError" if queue.sqlite else "ConnectionError"
    assert steps["load"].status == Status.FAILED
    assert steps["load"].error.startswith(f"the task queue refused it ({why}")
    assert {sr.status for name, sr in steps.items() if name != "load"} == {Status.UPSTREAM_FAILED}

    queue.back()  # the queue works again: nothing of the run waits to run, or is found stranded
    assert HUEY.pending_count() == 0
    assert not set(tasks.stranded_steps()) & {sr.pk for sr in steps.values()}


def test_a_retry_the_queue_refuses_says_so(operator_client, queue):
    failed = engine.run_inline(*engine.start_run("flaky_demo", {"fail": "true"}))
    queue.gone()

    response = operator_client.post(f"/runs/{failed.pk}/retry/start/", follow=True)

    retry = Run.objects.exclude(pk=failed.pk).get()
    assert f"Run #{retry.pk} could not be started: the task queue refused it" in response.content.decode()
    assert retry.status == Status.FAILED
