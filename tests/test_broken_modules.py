"""A broken module in the pipelines package hurts only its own pipelines: everything else
(web, worker, migrate, the CLI) keeps working, and operators are told where and why."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from app.models import Run, Status
from app.pipelines.registry import registry
from app.runs import engine, tasks
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
BROKEN = "tests.fixtures.broken_pipelines"
CROSS = "tests.fixtures.cross_import_pipelines"


@pytest.fixture
def discovered():
    """Fill the global registry from a fixture package; the shipped examples again after."""
    def discover(package):
        registry.discover(package)
        return registry

    try:
        yield discover
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)


def manage(*args, package=BROKEN):
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings", PIPELINES_PACKAGE=package)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_modules_may_import_each_other_and_each_pipeline_is_defined_once(discovered):
    found = discovered(CROSS)

    assert found.problems() == {} and found.import_errors == {}
    assert list(found.pipelines()) == ["t_shared", "t_users"]


@pytest.mark.django_db
def test_a_second_discovery_of_cross_importing_modules_defines_nothing_twice(discovered):
    discovered(CROSS)
    found = discovered(CROSS)

    assert found.problems() == {}
    run = engine.run_inline(*engine.start_run("t_users"))
    assert run.status == Status.SUCCEEDED


@pytest.mark.parametrize("command", [["check"], ["migrate", "--noinput"], ["list_pipelines"]])
def test_commands_work_next_to_a_broken_module(command):
    done = manage(*command)

    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "failed to import (tests/fixtures/broken_pipelines/bad_import.py:3)" in output


def test_list_pipelines_lists_the_good_pipeline_and_names_the_broken_ones():
    done = manage("list_pipelines")

    assert "t_usable" in done.stdout
    assert "t_cyclic: its steps form a cycle: extract → check → extract" in done.stderr


@pytest.mark.django_db
def test_a_broken_pipeline_is_refused_with_its_reason(discovered):
    discovered(BROKEN)

    with pytest.raises(engine.UnknownPipeline, match="pipeline 't_cyclic' is not available: its steps form a cycle"):
        tasks.trigger("t_cyclic", source="cli")
    assert Run.objects.count() == 0


@pytest.mark.django_db
def test_a_queued_step_of_a_pipeline_whose_module_broke_fails_with_the_load_error(discovered):
    discovered(CROSS)
    run, ready = engine.start_run("t_shared")
    # The module breaks (say, an edit with a typo) and the worker loads the package again.
    discovered(BROKEN)
    registry.import_errors["tests.fixtures.cross_import_pipelines.b_shared"] = registry.import_errors.pop(
        f"{BROKEN}.bad_import"
    )

    run = engine.run_inline(run, ready)

    step = run.step_runs.get()
    assert step.status == Status.FAILED
    assert step.error.startswith(
        "RuntimeError: pipeline 't_shared' cannot run: its module tests.fixtures.cross_import_pipelines.b_shared "
        "failed to import (tests/fixtures/broken_pipelines/bad_import.py:3: ModuleNotFoundError"
    )


@pytest.mark.django_db
def test_operators_see_where_a_module_broke_and_stakeholders_only_that_pipelines_are_unavailable(
    discovered, operator, stakeholder
):
    discovered(BROKEN)
    as_operator, as_stakeholder = Client(), Client()
    as_operator.force_login(operator)
    as_stakeholder.force_login(stakeholder)

    ops = as_operator.get("/pipelines/").content.decode()
    home = as_operator.get("/dashboard/").content.decode()
    stakeholders = as_stakeholder.get("/pipelines/").content.decode()

    for page in (ops, home):
        assert "Pipelines that are not available" in page
        assert "<code>tests/fixtures/broken_pipelines/bad_import.py:3</code>" in page
        assert "Traceback" in page and "import a_library_that_is_not_installed" in page
        assert "frozen importlib" not in page
    assert "Pipelines that are not available" in stakeholders and "<strong>t_cyclic</strong>" in stakeholders
    assert "bad_import" not in stakeholders and "Traceback" not in stakeholders and str(ROOT) not in stakeholders
    assert 'href="/pipelines/t_usable/"' in stakeholders


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_starts_next_to_a_broken_module_says_so_and_runs_the_good_pipelines(start_worker, discovered):
    discovered(BROKEN)
    worker = start_worker(PIPELINES_PACKAGE=BROKEN)
    run = tasks.trigger("t_usable", source="cli")

    run = wait_for(lambda: Run.objects.filter(pk=run.pk, status=Status.SUCCEEDED).first(), timeout=60,
                   message="the good pipeline to run")

    assert worker.poll() is None
    log = worker.log_path.read_text()
    assert f"pipeline module {BROKEN}.bad_import is not loaded: tests/fixtures/broken_pipelines/bad_import.py:3" in log
    assert "pipeline 't_cyclic' is not available: its steps form a cycle" in log
