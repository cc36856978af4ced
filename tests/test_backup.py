"""`manage.py backup` of a busy site, restored by `manage.py restore` into a fresh DATA_DIR
(and a fresh database): every run, version and file is there, and the runs that were in
progress finish on the restored site."""

import json
import signal
import subprocess
import sys
import uuid

import pytest
from django.db import connection

from app import artifacts
from app.mlmodels import deployments
from app.models import AuditAction, AuditEvent, ModelVersion, RegisteredModel, Run, Status, StepRun
from app.runs import tasks
from tests.conftest import ROOT, database_url, on_postgres, process_env, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def manage(*args, env, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)
    if check and done.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} exited {done.returncode}: {done.stdout}{done.stderr}")
    return done


def inventory():
    """Printed by a process on the restored site: what its database holds, and whether each
    file the database names is in its store and loads."""
    from app.mlmodels import serving

    runs = {run.pk: run.status for run in Run.objects.all()}
    outputs = {}
    for step_run in StepRun.objects.filter(status=Status.SUCCEEDED):
        try:
            artifacts.load_output(step_run.output_path, step_run.output_inline)
            outputs[step_run.pk] = "loads"
        except Exception as exc:  # noqa: BLE001 — reported, asserted on by the test
            outputs[step_run.pk] = repr(exc)
    versions = {}
    for version in ModelVersion.objects.select_related("model"):
        try:
            serving.load_version(version)
            versions[version.pk] = "loads"
        except Exception as exc:  # noqa: BLE001
            versions[version.pk] = repr(exc)
    live = {}
    for model in RegisteredModel.objects.filter(live__isnull=False):
        live[model.name] = serving.predict(model.name, {"instances": [[5.1, 3.5, 1.4, 0.2]]})["version"]
    logs = sorted(name for name, _size in artifacts.walk("logs"))
    print(json.dumps({"runs": runs, "outputs": outputs, "versions": versions, "live": live, "logs": logs}))


def seen_on(env) -> dict:
    """What `inventory` finds on the site of `env`."""
    done = manage("shell", "-c", "from tests.test_backup import inventory; inventory()", env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def fresh_site(tmp_path):
    """The environment of a fresh installation: a new DATA_DIR, and a new empty database."""
    data_dir = tmp_path / "fresh"
    if on_postgres():
        name = f"restored_{uuid.uuid4().hex[:10]}"
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        url = database_url().rsplit("/", 1)[0] + f"/{name}"
    else:
        url = f"sqlite:///{data_dir / 'db.sqlite3'}"
    yield process_env(DATA_DIR=str(data_dir), TEST_DATABASE_URL=url)
    if on_postgres():
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def finished(*runs):
    return all(Run.objects.get(pk=run.pk).is_finished for run in runs)


def test_a_backup_of_a_busy_site_restores_with_every_run_version_and_file(start_worker, fresh_site, tmp_path, operator):
    worker = start_worker()
    trained = [tasks.trigger("train_classifier", {"n_estimators": 5, "seed": seed}) for seed in (1, 2)]
    wait_for(lambda: finished(*trained), timeout=120, message="the training runs")
    deployed = ModelVersion.objects.get(run=trained[0])
    deployments.deploy(deployed, operator, "the first")
    busy = [tasks.trigger("fanout_demo", {"rows": 5000, "seed": seed, "pause": 2}) for seed in range(3)]
    wait_for(lambda: StepRun.objects.filter(run__in=busy, status=Status.RUNNING).exists(), message="a step running")

    dest = tmp_path / "backup"
    out = manage("backup", str(dest), env=process_env()).stdout

    assert "Backed up 5 run(s)" in out and "2 model version(s)" in out
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["runs"] == 5 and manifest["versions"] == 2 and manifest["files"] > 0
    assert AuditEvent.objects.filter(action=AuditAction.BACKUP, username="manage.py backup").exists()
    wait_for(lambda: finished(*busy), timeout=120, message="the busy runs on the first site")
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)

    out = manage("restore", str(dest), env=fresh_site).stdout

    assert "Restored 5 run(s), 2 model version(s)" in out
    again = manage("restore", str(dest), env=fresh_site, check=False)
    assert again.returncode == 1 and "already has runs or model versions" in again.stderr
    seen = seen_on(fresh_site)
    assert {int(pk) for pk in seen["runs"]} == {run.pk for run in [*trained, *busy]}
    # The database was copied first, while the busy runs were going (not when the copy of the
    # files ended): the restored site has them unfinished.
    assert {seen["runs"][str(run.pk)] for run in busy} != {Status.SUCCEEDED}
    assert len(seen["versions"]) == 2 and set(seen["versions"].values()) == {"loads"}
    assert seen["live"] == {deployed.model.name: deployed.version}  # and the deployed one serves predictions
    assert seen["outputs"] and set(seen["outputs"].values()) == {"loads"}
    assert any(name.startswith(f"logs/{trained[0].pk}/") for name in seen["logs"])

    # The restored site finishes what was in progress when the backup was taken.
    start_worker(**{key: fresh_site[key] for key in ("DATA_DIR", "TEST_DATABASE_URL")},
                 STEP_HEARTBEAT_SECONDS="0.5", STEP_LOST_AFTER_SECONDS="3", WORKER_BEAT_SECONDS="0.5")

    def all_succeeded():
        found = seen_on(fresh_site)
        return set(found["runs"].values()) == {Status.SUCCEEDED} and found

    done = wait_for(all_succeeded, timeout=120, interval=1, message="the restored site to finish the busy runs")
    assert len(done["runs"]) == 5


def test_restore_refuses_what_is_not_a_backup(tmp_path, fresh_site):
    (tmp_path / "nothing").mkdir()
    done = manage("restore", str(tmp_path / "nothing"), env=fresh_site, check=False)
    assert done.returncode == 1 and "is not a complete backup: it has no manifest.json" in done.stderr
    (tmp_path / "nothing" / "manifest.json").write_text("{not json")
    done = manage("restore", str(tmp_path / "nothing"), env=fresh_site, check=False)
    assert done.returncode == 1 and "cannot be read" in done.stderr and "Traceback" not in done.stderr


def test_backup_refuses_a_destination_that_has_files(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    done = manage("backup", str(tmp_path / "full"), env=process_env(), check=False)
    assert done.returncode == 1 and "already exists and is not an empty directory" in done.stderr
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
