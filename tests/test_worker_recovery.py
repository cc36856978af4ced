"""A worker killed in the middle of a step: the step is found, queued again and finished."""

import signal
import sqlite3

import pytest
from django.db import connection
from django.test import override_settings

from app.models import Run, Status
from app.runs import engine, tasks, watchdog
from tests.conftest import on_postgres, wait_for
from tests.gate import Gate

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


def test_a_worker_backs_off_while_its_database_is_gone_and_carries_on_when_it_is_back(start_worker, tmp_path):
    if on_postgres():
        # PostgreSQL through a closed gate: nothing listens until it opens.
        db = connection.settings_dict
        gate = Gate(db["HOST"], db["PORT"])
        worker = start_worker(TEST_DATABASE_URL=f"postgres://{db['USER']}@127.0.0.1:{gate.port}/{db['NAME']}",
                              DB_CONNECT_TIMEOUT="2", DB_POOL_TIMEOUT="1")
        come_back = gate.open

        def finished():
            return Run.objects.get(pk=run.pk).status == Status.SUCCEEDED
    else:
        later = tmp_path / "later"  # the worker's SQLite file is not there yet
        worker = start_worker(TEST_DATABASE_URL=f"sqlite:///{later / 'db.sqlite3'}")

        def come_back():  # the database comes back, with the run in it
            later.mkdir()
            with sqlite3.connect(connection.settings_dict["NAME"]) as source, \
                    sqlite3.connect(later / "db.sqlite3") as copy:
                source.backup(copy)

        def finished():
            with sqlite3.connect(later / "db.sqlite3") as copy:
                return copy.execute("SELECT status FROM app_run WHERE id = ?", [run.pk]).fetchone()[0] == "succeeded"

    run, ready = engine.start_run("fanout_demo", {"rows": "5"}, source="cli")
    tasks.enqueue(ready)

    wait_for(lambda: "trying it again in 2 s" in worker.log_path.read_text(), timeout=30,
             message="the worker to say it backs off, twice")
    log = worker.log_path.read_text()
    assert f"step run {ready[0]}: the database or disk failed (OperationalError: " in log
    assert "trying it again in 1 s" in log and "trying it again in 2 s" in log and "Traceback" not in log

    come_back()
    wait_for(finished, timeout=90, message="the run to finish once the database is back")
    assert worker.poll() is None
    assert "the database and disk work again after" in worker.log_path.read_text()


def test_a_run_left_unclosed_by_a_dead_worker_is_closed_by_the_watchdog(start_worker):
    """Going down a chain on PostgreSQL, a success is recorded without a transaction and the
    run closed right after it; a worker dying in between leaves every step finished and the
    run running. The next worker's watchdog closes it, with the status its steps give it."""
    run = engine.run_inline(*engine.start_run("fanout_demo", {"rows": "5"}))
    assert run.status == Status.SUCCEEDED and run.steps_finished == run.steps_total
    Run.objects.filter(pk=run.pk).update(status=Status.RUNNING, finished_at=None)  # as the dead worker left it

    start_worker(WORKER_BEAT_SECONDS="0.5")

    closed = wait_for(lambda: Run.objects.filter(pk=run.pk).exclude(status=Status.RUNNING).first(), timeout=30,
                      message="the watchdog to close the run")
    assert closed.status == Status.SUCCEEDED and closed.finished_at is not None
