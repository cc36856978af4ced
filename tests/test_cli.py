"""Management commands: run_pipeline, list_pipelines, seed_demo."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from huey.contrib.djhuey import HUEY

from app.models import Run, Status, StepRun

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


def run_command(*args):
    """Call a management command; return what it wrote to stdout and stderr."""
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def empty_queue():
    HUEY.flush()
    yield HUEY
    HUEY.flush()


# --- run_pipeline -----------------------------------------------------------------------------


def test_it_runs_a_pipeline_in_process_and_prints_the_run_id():
    out, err = run_command("run_pipeline", "fanout_demo", "--sync", "--param", "rows=10")

    run = Run.objects.get()
    assert out == f"{run.pk}\n"
    assert err == f"run #{run.pk} succeeded (5/5 steps)\n"
    assert (run.status, run.params, run.trigger_source) == (Status.SUCCEEDED, {"rows": 10, "seed": 7, "pause": 0.0}, "cli")
    assert run.triggered_by is None


def test_it_queues_a_run_for_the_worker_by_default(django_capture_on_commit_callbacks, empty_queue):
    with django_capture_on_commit_callbacks(execute=True):
        out, err = run_command("run_pipeline", "flaky_demo", "--param", "fail=false")

    run = Run.objects.get()
    extract = StepRun.objects.get(run=run, step_name="extract")
    assert (out, err) == (f"{run.pk}\n", "")
    assert (run.status, run.params) == (Status.QUEUED, {"fail": False, "transient_failures": 0})
    assert [task.args for task in empty_queue.pending()] == [(extract.pk,)]


def test_it_names_an_unknown_pipeline_and_lists_the_known_ones():
    with pytest.raises(CommandError) as caught:
        run_command("run_pipeline", "fanout", "--sync")

    assert str(caught.value) == (
        "there is no pipeline named 'fanout' (known pipelines: fanout_demo, flaky_demo, segment_report, train_classifier)"
    )
    assert not Run.objects.exists()


def test_it_names_a_parameter_with_a_bad_value():
    with pytest.raises(CommandError) as caught:
        run_command("run_pipeline", "fanout_demo", "--sync", "--param", "rows=abc")

    assert str(caught.value) == "bad parameters for fanout_demo: rows: 'abc' is not a whole number"
    assert not Run.objects.exists()


def test_it_names_an_unknown_parameter():
    with pytest.raises(CommandError) as caught:
        run_command("run_pipeline", "fanout_demo", "--sync", "--param", "row=10")

    assert str(caught.value) == (
        "bad parameters for fanout_demo: row: unknown parameter (this pipeline takes: pause, rows, seed)"
    )


def test_it_refuses_a_parameter_without_a_value():
    with pytest.raises(CommandError) as caught:
        run_command("run_pipeline", "fanout_demo", "--sync", "--param", "novalue")

    assert str(caught.value) == "--param 'novalue' is not of the form key=value"
    assert not Run.objects.exists()


def test_it_refuses_a_parameter_without_a_key():
    with pytest.raises(CommandError) as caught:
        run_command("run_pipeline", "fanout_demo", "--sync", "--param", "=10")

    assert str(caught.value) == "--param '=10' has an empty key"


def test_it_refuses_a_parameter_given_twice():
    with pytest.raises(CommandError) as caught:
        run_command("run_pipeline", "fanout_demo", "--sync", "--param", "rows=1", "--param", "rows=2")

    assert str(caught.value) == "--param rows is given twice"
    assert not Run.objects.exists()


def test_it_keeps_an_equals_sign_in_a_value():
    with pytest.raises(CommandError) as caught:
        run_command("run_pipeline", "fanout_demo", "--sync", "--param", "rows=1=2")

    assert str(caught.value) == "bad parameters for fanout_demo: rows: '1=2' is not a whole number"


def test_it_refuses_sync_and_wait_together():
    with pytest.raises(CommandError) as caught:
        run_command("run_pipeline", "fanout_demo", "--sync", "--wait")

    assert "not allowed with argument" in str(caught.value)
    assert not Run.objects.exists()


def test_it_fails_when_the_run_failed():
    with pytest.raises(CommandError) as caught:
        run_command("run_pipeline", "flaky_demo", "--sync")

    run = Run.objects.get()
    assert str(caught.value) == (
        f"run #{run.pk} ended failed: step 'validate' failed: ValueError: 1 record(s) have a negative amount: ids [5]; "
        f"see http://127.0.0.1:8000/runs/{run.pk}/"
    )
    assert run.status == Status.FAILED
    assert StepRun.objects.get(run=run, step_name="validate").status == Status.FAILED


# --- list_pipelines ---------------------------------------------------------------------------


def test_it_lists_the_pipelines_with_their_parameters():
    out, err = run_command("list_pipelines")

    assert err == ""
    assert "fanout_demo  (5 steps) Generates numbers" in out
    assert "flaky_demo  (4 steps) Extracts records" in out
    assert "train_classifier  (5 steps) Loads a bundled dataset" in out
    assert "    --param fail=…  bool, default True — Make the validate step fail (set false for a clean run)\n" in out
    assert (
        "    --param dataset=…  choice, default 'iris', one of 'iris', 'wine', 'breast_cancer' — "
        "Bundled scikit-learn dataset\n"
    ) in out
    assert "    --param test_size=…  float, default 0.25, from 0.05 to 0.9 — Share of rows held out for evaluation\n" in out


def test_it_shows_dates_as_a_user_writes_them(define):
    import datetime

    from app.pipelines import Params, param

    class DatedParams(Params):
        day: datetime.date = param(datetime.date(2024, 1, 1), ge="2020-01-01", help="Up to this day")
        label: str = param("", max_length=20)

    @define("t_dated", params=DatedParams).step()
    def only(ctx):
        return None

    out, _err = run_command("list_pipelines")

    assert "    --param day=…  date, default 2024-01-01, at least 2020-01-01 — Up to this day\n" in out
    assert "    --param label=…  str, default '', up to 20 characters\n" in out


# --- seed_demo -----------------------------------------------------------------------------------


def test_it_creates_the_demo_users_with_their_roles(monkeypatch):
    monkeypatch.setenv("DEMO_OPERATOR_PASSWORD", "operator password from env")

    out, _err = run_command("seed_demo")

    users = {user.username: user for user in User.objects.all()}
    assert set(users) == {"operator", "stakeholder", "admin"}
    assert users["operator"].has_perm("app.operate")
    assert not users["stakeholder"].has_perm("app.operate")
    assert list(users["stakeholder"].groups.values_list("name", flat=True)) == ["stakeholders"]
    assert users["admin"].is_superuser and users["admin"].is_staff
    assert users["operator"].check_password("operator password from env")
    assert "created user 'operator' with password: from $DEMO_OPERATOR_PASSWORD" in out
    assert out.count("created user") == 3


def test_it_creates_the_demo_users_only_once():
    run_command("seed_demo")
    passwords = dict(User.objects.values_list("username", "password"))

    out, err = run_command("seed_demo")

    assert (out, err) == ("", "")
    assert dict(User.objects.values_list("username", "password")) == passwords


# --- the environment ----------------------------------------------------------------------------


def bare_manage(data_dir, *args):
    """manage.py with the production settings and no SECRET_KEY in the environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DJANGO_SETTINGS_MODULE", "DEBUG")}
    env["DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_commands_read_the_key_that_make_run_keeps_in_the_data_dir(tmp_path):
    (tmp_path / "secret_key").write_text("a-development-key-from-make-run\n")

    done = bare_manage(tmp_path, "check")

    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout


def test_a_missing_key_is_one_line_saying_what_to_set(tmp_path):
    done = bare_manage(tmp_path, "check")

    assert done.returncode == 1
    assert done.stderr == (
        "manage.py: SECRET_KEY is not set: set it in the environment, or run `make run` once to create "
        f"{tmp_path / 'secret_key'}\n"
    )
