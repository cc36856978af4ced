"""Several workers on one database, queue and store: their own signs of life, routing by
queue, draining on SIGTERM, the watchdog once per period, one migrate at a time."""

import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client, override_settings

from app.models import Run, Status, StepAttempt, WorkerHeartbeat
from app.pipelines.registry import registry
from app.runs import leases, tasks
from tests.conftest import database_url, on_postgres, process_env, wait_for

ROOT = Path(__file__).resolve().parent.parent
SCALE = "tests.fixtures.scale_pipelines"
FAST = {"WORKER_BEAT_SECONDS": "0.3", "STEP_HEARTBEAT_SECONDS": "0.2", "STEP_LOST_AFTER_SECONDS": "1.5"}

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def scale(start_worker):
    """Workers (and this process) with the scale pipelines loaded."""
    registry.discover(SCALE)

    def start(**env):
        return start_worker(PIPELINES_PACKAGE=SCALE, **{**FAST, **env})

    try:
        yield start
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)


def finished(run):
    run = Run.objects.get(pk=run.pk)
    return run if run.is_finished else None


def test_each_worker_records_its_own_sign_of_life_and_a_killed_one_shows_dead(scale, operator):
    workers = [scale() for _ in range(3)]

    def beats():
        return {b.name.rsplit(":", 1)[1]: b for b in WorkerHeartbeat.objects.all()}

    seen = wait_for(lambda: (b := beats()) and len(b) == 3 and b, timeout=60, message="three heartbeats")
    assert set(seen) == {str(w.pid) for w in workers}
    for beat in seen.values():
        assert (beat.queue, beat.threads, beat.stopping) == ("default", 4, False)
        assert sorted(beat.code) == ["t_routed", "t_slow", "t_wide"]

    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait()
    client = Client()
    client.force_login(operator)
    def row_of(page, pid):
        row = page[page.index(f":{pid}</code>"):]
        return row[:row.index("</tr>")]

    with override_settings(WORKER_BEAT_SECONDS=0.3, STEP_HEARTBEAT_SECONDS=0.2):
        page = wait_for(
            lambda: (text := client.get("/dashboard/").content.decode()) and "dead</span>" in row_of(text, workers[0].pid)
            and text, timeout=30, message="the killed worker to show as dead",
        )
    assert '<div class="value">2 alive</div>' in page
    for alive in workers[1:]:
        row = row_of(page, alive.pid)
        assert "alive</span>" in row and "<td>default</td>" in row and '<td class="num">3</td>' in row


def test_three_workers_run_a_wide_fan_out_once_each(scale):
    for _ in range(3):
        scale()
    run = tasks.trigger("t_wide", source="cli")

    run = wait_for(lambda: finished(run), timeout=120, message="the wide run to finish")

    assert run.status == Status.SUCCEEDED
    assert run.step_runs.count() == 42 and set(run.step_runs.values_list("attempt", flat=True)) == {1}
    assert not StepAttempt.objects.filter(step_run__run=run).exists()
    assert set(run.step_runs.values_list("upstream_left", flat=True)) == {0}


def test_a_step_on_queue_gpu_waits_for_a_gpu_worker_and_runs_only_there(scale, operator):
    default = scale()
    run = tasks.trigger("t_routed", source="cli")
    client = Client()
    client.force_login(operator)

    wait_for(lambda: run.step_runs.filter(step_name="train", status=Status.QUEUED).exists(), timeout=30,
             message="train to be queued")
    page = wait_for(
        lambda: (text := client.get(f"/runs/{run.pk}/").content.decode()) and "no-worker-gpu" in text and text,
        timeout=30, message="the run page to say no worker serves queue gpu",
    )
    assert "Waiting for a worker on queue <strong>gpu</strong>: no live worker serves it." in page
    assert "python manage.py run_huey --queue gpu" in page

    gpu = scale(HUEY_QUEUE="gpu")
    run = wait_for(lambda: finished(run), timeout=60, message="the run to finish")

    assert run.status == Status.SUCCEEDED
    by_step = {sr.step_name: sr.worker for sr in run.step_runs.all()}
    assert f":{gpu.pid}:" in by_step["train"]
    assert f":{default.pid}:" in by_step["prepare"] and f":{default.pid}:" in by_step["report"]
    assert "no-worker-gpu" not in client.get(f"/runs/{run.pk}/").content.decode()


def test_sigterm_lets_a_running_step_finish(scale):
    worker = scale(WORKER_DRAIN_SECONDS="30")
    run = tasks.trigger("t_slow", {"seconds": "3"}, source="cli")
    wait_for(lambda: run.step_runs.filter(status=Status.RUNNING).exists(), timeout=30, message="the step to start")

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=40) == 0

    run = Run.objects.get(pk=run.pk)
    assert run.status == Status.SUCCEEDED
    step = run.step_runs.get()
    assert step.attempt == 1 and not step.attempts.exists()
    assert "worker stopped: every running step finished" in worker.log_path.read_text()


def test_sigterm_hands_a_long_step_over_at_once_when_the_drain_time_is_up(scale):
    first = scale(WORKER_DRAIN_SECONDS="0.5", STEP_LOST_AFTER_SECONDS="600", STEP_HEARTBEAT_SECONDS="5")
    run = tasks.trigger("t_slow", {"seconds": "6"}, source="cli")
    wait_for(lambda: run.step_runs.filter(status=Status.RUNNING).exists(), timeout=30, message="the step to start")
    second = scale(STEP_LOST_AFTER_SECONDS="600", STEP_HEARTBEAT_SECONDS="5")

    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    run = wait_for(lambda: finished(run), timeout=60, message="the run to finish on the second worker")

    # Handed over at once: the watchdog (600 s here) had nothing to do with it.
    assert run.status == Status.SUCCEEDED
    step = run.step_runs.get()
    assert step.attempt == 2 and f":{second.pid}:" in step.worker
    handed = step.attempts.get()
    assert f":{first.pid}" in handed.worker
    assert handed.error.endswith("shut down during this attempt; the step was queued again")
    assert "attempt 1 starts" in handed.log
    assert "handing the steps still running over to another worker" in first.log_path.read_text()


def test_a_surviving_worker_rescues_the_step_of_a_killed_one_by_itself(scale):
    first = scale()
    run = tasks.trigger("t_slow", {"seconds": "4"}, source="cli")
    wait_for(lambda: run.step_runs.filter(status=Status.RUNNING).exists(), timeout=30, message="the step to start")
    second = scale()

    first.send_signal(signal.SIGKILL)
    first.wait()
    # Nobody calls the watchdog here: the second worker's own thread does, within
    # STEP_LOST_AFTER_SECONDS (1.5) plus a period.
    run = wait_for(lambda: finished(run), timeout=60, message="the run to finish on the second worker")

    assert run.status == Status.SUCCEEDED
    step = run.step_runs.get()
    assert step.attempt == 2 and f":{second.pid}:" in step.worker
    assert "stopped responding" in step.attempts.get().error


def test_a_worker_without_the_pipeline_leaves_its_steps_to_one_that_has_it(scale, start_worker):
    start_worker(**FAST)  # the suite's pipelines only: no t_slow
    run = tasks.trigger("t_slow", {"seconds": "0.1"}, source="cli")
    wait_for(
        lambda: "has no such pipeline" in run.step_runs.get().error, timeout=30,
        message="the step to wait for a worker that has the pipeline",
    )
    assert run.step_runs.get().status in (Status.QUEUED, Status.RETRYING)

    right = scale()
    run = wait_for(lambda: finished(run), timeout=60, message="the run to finish")

    assert run.status == Status.SUCCEEDED
    assert f":{right.pid}:" in run.step_runs.get().worker


def test_periodic_work_goes_to_one_worker_per_period():
    assert leases.take("watchdog", 100, "a") is True
    assert leases.take("watchdog", 100, "b") is False
    assert leases.take("watchdog", 99, "b") is False
    assert leases.take("watchdog", 101, "b") is True


def fresh_database_url(tmp_path) -> tuple[str, callable]:
    if not on_postgres():
        return f"sqlite:///{tmp_path / 'fresh.sqlite3'}", lambda: None
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")

    def drop():
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return database_url().rsplit("/", 1)[0] + f"/{name}", drop


def test_two_migrates_at_once_apply_each_migration_once(tmp_path):
    url, drop = fresh_database_url(tmp_path)
    try:
        env = process_env(TEST_DATABASE_URL=url)
        both = [
            subprocess.Popen([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)
        ]
        outputs = [process.communicate(timeout=120)[0] for process in both]

        assert [process.returncode for process in both] == [0, 0], outputs
        applied = [output.count("Applying app.0001_initial... OK") for output in outputs]
        assert sorted(applied) == [0, 1], outputs
        assert any("No migrations to apply." in output for output in outputs)
    finally:
        drop()
