"""Code changes: `make run` (Procfile.dev) restarts the worker when a pipeline module changes,
and a worker that was not restarted never runs a run's step with other code than the run's."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.conf import settings

from app.models import Run, Status
from app.pipelines.registry import registry
from app.runs import actions, tasks
from tests.conftest import process_env, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
WATCHFILES = Path(sys.executable).parent / "watchfiles"
PACKAGE = "reload_pipelines"


def module_text(version):
    return textwrap.dedent(f'''
        from app.pipelines import pipeline

        edited = pipeline("t_edited", description="Prints its version.")


        @edited.step()
        def hello(ctx):
            print("running version {version}")
    ''')


def write_module(folder, version):
    path = folder / PACKAGE / "edited.py"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(module_text(version))
    tmp.replace(path)


@pytest.fixture
def package(tmp_path, monkeypatch):
    (tmp_path / PACKAGE).mkdir()
    (tmp_path / PACKAGE / "__init__.py").write_text("")
    write_module(tmp_path, 1)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    registry.discover(settings.PIPELINES_PACKAGE)


def finished_log(run):
    run = Run.objects.get(pk=run.pk)
    return run.step_runs.get().log if run.status == Status.SUCCEEDED else None


def test_the_worker_restarts_on_an_edit_and_runs_the_new_code(package, tmp_path):
    # The line of Procfile.dev, watching the fixture package instead of pipelines/.
    line = next(l for l in (ROOT / "Procfile.dev").read_text().splitlines() if l.startswith("worker:"))
    assert line.endswith('"python manage.py run_huey" app pipelines')
    env = process_env(
        PIPELINES_PACKAGE=PACKAGE, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # as `make run` sets it
    )
    log_path = tmp_path / "watch.log"
    with open(log_path, "wb") as log:
        watcher = subprocess.Popen(
            [str(WATCHFILES), "--filter", "python", "--sigint-timeout", "30", "python manage.py run_huey",
             str(tmp_path / PACKAGE)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        registry.discover(PACKAGE)
        first = tasks.trigger("t_edited", source="cli")
        assert "running version 1" in wait_for(lambda: finished_log(first), timeout=60, message="the first run")

        write_module(tmp_path, 2)
        wait_for(lambda: "change detected" in log_path.read_text(), timeout=30, message="the watcher to restart")
        registry.discover(PACKAGE)  # the web process reloads too (its own watcher in Procfile.dev)
        second = tasks.trigger("t_edited", source="cli")

        assert "running version 2" in wait_for(lambda: finished_log(second), timeout=60, message="the second run")
    finally:
        os.killpg(watcher.pid, signal.SIGTERM)
        try:
            watcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(watcher.pid, signal.SIGKILL)
            watcher.wait()
    shutil.rmtree(tmp_path / PACKAGE, ignore_errors=True)


def test_a_worker_with_older_code_refuses_the_step_says_so_and_a_restart_fixes_it(package, tmp_path, start_worker):
    env = {"PIPELINES_PACKAGE": PACKAGE, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "STEP_CODE_WAIT_SECONDS": "3"}
    old = start_worker(**env)
    registry.discover(PACKAGE)
    warm = tasks.trigger("t_edited", source="cli")
    assert "running version 1" in wait_for(lambda: finished_log(warm), timeout=60, message="the worker to be up")

    write_module(tmp_path, 2)  # deployed on the web side; the worker was not restarted
    registry.discover(PACKAGE)
    run = tasks.trigger("t_edited", source="cli")

    run = wait_for(lambda: Run.objects.filter(pk=run.pk, status=Status.FAILED).first(), timeout=60,
                   message="the stale worker to give the step up")
    hello = run.step_runs.get()
    assert hello.error.startswith(f"worker {socket.gethostname()}:{old.pid} runs older code")
    assert "runs older code of pipeline 't_edited' than this run" in hello.error
    assert hello.error.endswith("and no worker with the run's code took the step within 3 s: restart the worker")
    assert hello.log == ""  # the old code never ran for this run

    old.terminate()
    old.wait(timeout=30)
    start_worker(**env)
    retry = tasks.start(actions.retry_from_failure(run, None))

    assert "running version 2" in wait_for(lambda: finished_log(retry), timeout=60, message="the retry")
