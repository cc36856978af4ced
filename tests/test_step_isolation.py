"""Each attempt runs in a child process the worker supervises: whatever a step does to its own
process fails that attempt only (real workers on tests/fixtures/hostile_pipelines)."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from app.mlmodels import deployments
from app.models import ModelVersion, Run, Status
from app.pipelines.registry import registry
from app.runs import tasks, watchdog
from tests.conftest import free_port, process_env, wait_for

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

HOSTILE = "tests.fixtures.hostile_pipelines"
FAST_HEARTBEAT = {"STEP_HEARTBEAT_SECONDS": "0.2", "STEP_LOST_AFTER_SECONDS": "1.5"}


@pytest.fixture
def hostile(start_worker):
    """Workers (and this process) with the hostile pipelines loaded."""
    registry.discover(HOSTILE)

    def start(**env):
        return start_worker(PIPELINES_PACKAGE=HOSTILE, **env)

    try:
        yield start
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)


def finished(run):
    run = Run.objects.get(pk=run.pk)
    return run if run.is_finished else None


def test_it_fails_a_step_that_kills_itself_and_keeps_the_worker_and_other_runs_going(hostile):
    worker = hostile()
    innocent = tasks.trigger("t_innocent", source="cli")
    poison = tasks.trigger("t_poison", {"how": "sigkill"}, source="cli")

    poison = wait_for(lambda: finished(poison), timeout=60, message="the poisoned run to end")
    innocent = wait_for(lambda: finished(innocent), timeout=60, message="the innocent run to end")

    assert innocent.status == Status.SUCCEEDED
    assert poison.status == Status.FAILED
    die = poison.step_runs.get(step_name="die")
    assert (die.status, die.attempt) == (Status.FAILED, 2)  # retries=1: tried twice, then given up
    assert "killed by signal 9 (SIGKILL" in die.error and "out of memory" in die.error
    assert "attempt 2: about to sigkill" in die.log
    first = die.attempts.get()
    assert (first.number, first.status) == (1, Status.FAILED) and "signal 9" in first.error
    assert "attempt 1: about to sigkill" in first.log
    assert poison.step_runs.get(step_name="after_die").status == Status.UPSTREAM_FAILED
    assert worker.poll() is None  # the worker is still up
    assert f":{worker.pid}:" in die.worker


@pytest.mark.parametrize(
    "how, error",
    [
        ("exit", "SystemExit: the step called sys.exit(3)"),
        ("interrupt", "KeyboardInterrupt: the step was interrupted"),
        ("bad_str", "Unprintable: (its message could not be read: RuntimeError)"),
        ("os_exit", "the step's process exited with code 5 before it recorded an outcome"),
    ],
)
def test_it_records_every_way_a_step_can_end_its_process(hostile, how, error):
    worker = hostile()
    run = tasks.trigger("t_poison", {"how": how}, source="cli")

    run = wait_for(lambda: finished(run), timeout=60, message="the run to end")

    die = run.step_runs.get(step_name="die")
    assert run.status == Status.FAILED
    assert (die.status, die.attempt, die.error) == (Status.FAILED, 2, error)
    assert worker.poll() is None


@override_settings(STEP_LOST_AFTER_SECONDS=1.5)
def test_a_step_holding_the_gil_is_not_taken_for_dead_and_runs_once(hostile):
    hostile(**FAST_HEARTBEAT)
    hostile(**FAST_HEARTBEAT)
    run = tasks.trigger("t_gil", {"seconds": "5"}, source="cli")
    wait_for(lambda: run.step_runs.filter(status=Status.RUNNING).exists(), message="the step to start")

    # While it holds its process's GIL, its heartbeat keeps coming (from the worker).
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert watchdog.rescue_lost_steps() == []
        time.sleep(0.25)

    run = wait_for(lambda: finished(run), timeout=60, message="the run to end")
    hog = run.step_runs.get()
    assert (run.status, hog.attempt, hog.attempts.count()) == (Status.SUCCEEDED, 1, 0)


def test_it_stops_a_step_at_its_timeout(hostile):
    hostile(STEP_KILL_GRACE_SECONDS="1")
    run = tasks.trigger("t_timeout", source="cli")

    run = wait_for(lambda: finished(run), timeout=30, message="the run to end")

    sleepy = run.step_runs.get()
    assert sleepy.status == Status.FAILED
    assert sleepy.error == "timed out after 1 s: the step's process was stopped"
    assert "going to sleep" in sleepy.log
    assert sleepy.duration.total_seconds() < 15


def test_only_the_version_of_the_attempt_that_succeeded_can_be_deployed(hostile, operator, operator_client):
    hostile()
    run = tasks.trigger("t_register_then_die", {"model": "killed-demo"}, source="cli")

    run = wait_for(lambda: finished(run), timeout=60, message="the run to end")

    assert run.status == Status.SUCCEEDED
    versions = list(ModelVersion.objects.filter(run=run).order_by("version"))
    assert [v.attempt for v in versions] == [1, 2]
    with pytest.raises(deployments.DeployRefused, match="attempt 1 of a step that succeeded on attempt 2"):
        deployments.deploy(versions[0], operator, "the killed attempt's model")
    deployments.deploy(versions[1], operator, "the attempt that succeeded")
    assert versions[1].model.__class__.objects.get(pk=versions[1].model_id).live.version == versions[1]
    # The run page counts the metric of the attempt that succeeded, not the killed one's,
    # and says which version cannot go live.
    page = operator_client.get(f"/runs/{run.pk}/").content.decode()
    metrics = page[page.index("<h2>Metrics</h2>"):page.index("</table>", page.index("<h2>Metrics</h2>"))]
    assert "0.7000" in metrics and "0.6000" not in metrics
    assert "registered by attempt 1, which did not finish: cannot go live" in page


def test_under_the_procfile_a_step_that_kills_itself_leaves_the_site_up(transactional_db, tmp_path):
    """honcho stops every process when one exits: the worker must survive the step."""
    port = free_port()
    env = process_env(
        PIPELINES_PACKAGE=HOSTILE, HOST="127.0.0.1", PORT=str(port),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    log_path = tmp_path / "honcho.log"
    with open(log_path, "wb") as log:
        honcho = subprocess.Popen(
            [str(Path(sys.executable).parent / "honcho"), "start", "-f", "Procfile", "web", "worker"], cwd=ROOT, env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        registry.discover(HOSTILE)
        wait_for(lambda: login_page(port) == 200, timeout=60, message="the site to answer")
        run = tasks.trigger("t_poison", {"how": "sigkill"}, source="cli")

        run = wait_for(lambda: finished(run), timeout=60, message="the poisoned run to end")

        assert run.status == Status.FAILED and "signal 9" in run.step_runs.get(step_name="die").error
        assert honcho.poll() is None, log_path.read_text()
        assert login_page(port) == 200
        innocent = tasks.trigger("t_innocent", source="cli")
        assert wait_for(lambda: finished(innocent), timeout=60, message="a run after it").status == Status.SUCCEEDED
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)
        os.killpg(honcho.pid, signal.SIGTERM)
        try:
            honcho.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait()


def login_page(port) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=5) as response:
            return response.status
    except OSError:
        return 0
