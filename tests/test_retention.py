"""Retention: `manage.py prune` and the daily prune of a worker delete old runs with their
files, and never what a deployed (or once-deployed) model version came from."""

import datetime
import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from app import artifacts
from app.mlmodels import deployments
from app.models import AuditAction, AuditEvent, ModelVersion, PipelineSnapshot, Run, Status, StepRun
from app.runs import actions, engine
from tests.conftest import train_version, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def age(runs, days):
    """Make `runs` look as if they were made and finished `days` ago."""
    then = timezone.now() - datetime.timedelta(days=days)
    Run.objects.filter(pk__in=[run.pk for run in runs]).update(created_at=then, finished_at=then)


def fanout(**params):
    return engine.run_inline(*engine.start_run("fanout_demo", {"rows": "50", "seed": "1", "pause": "0", **params}))


def files_of(run) -> list[str]:
    return [name for prefix in (f"runs/{run.pk}", f"logs/{run.pk}") for name, _size in artifacts.walk(prefix)]


def prune(*args) -> str:
    out = io.StringIO()
    call_command("prune", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def files(settings):
    settings.STEP_OUTPUT_INLINE_BYTES = 0  # these outputs are small: make them files


def test_prune_deletes_old_runs_and_their_files_but_keeps_what_deployed_versions_came_from(
    model_demo, operator, files, operator_client
):
    deployed = train_version(accuracy=0.9)
    deployments.deploy(deployed, operator, "first")
    rolled_back = train_version(accuracy=0.8)
    deployments.deploy(rolled_back, operator, "second")
    deployments.rollback(deployed.model, operator, "the second was worse")
    never = train_version(accuracy=0.7)
    old = fanout()
    recent = fanout()
    age([deployed.run, rolled_back.run, never.run, old], days=40)
    old_files = files_of(old)
    assert old_files and artifacts.resolve(never.file_path).is_file()

    out = prune("--older-than", "30d", "--keep-last", "0")

    assert "Deleted 2 run(s)" in out and "1 never-deployed model version(s)" in out
    assert "Kept 2 old run(s) whose model version is or was deployed" in out
    # The deployed and the rolled-back version: their runs, step runs, logs and files stay.
    for version in (deployed, rolled_back):
        assert artifacts.resolve(version.file_path).is_file()
        assert Run.objects.filter(pk=version.run_id).exists()
        assert StepRun.objects.filter(run_id=version.run_id, status=Status.SUCCEEDED).exists()
        assert files_of(version.run)
    assert operator_client.get(f"/models/{deployed.model.name}/").status_code == 200
    assert operator_client.get(f"/runs/{rolled_back.run_id}/").status_code == 200
    # The never-deployed version and the plain old run are gone, files and all.
    assert not ModelVersion.objects.filter(pk=never.pk).exists()
    assert not artifacts.resolve(never.file_path).exists()
    assert not Run.objects.filter(pk__in=[never.run_id, old.pk]).exists()
    assert not StepRun.objects.filter(run_id__in=[never.run_id, old.pk]).exists()
    assert files_of(old) == [] and files_of(never.run) == []
    assert operator_client.get(f"/runs/{old.pk}/").status_code == 404
    # The recent run is untouched, and the pipeline's snapshot is still used by it.
    assert files_of(recent) and Run.objects.filter(pk=recent.pk).exists()
    assert PipelineSnapshot.objects.filter(pk=recent.snapshot_id).exists()
    event = AuditEvent.objects.get(action=AuditAction.PRUNE)
    assert event.details["runs"] == 2 and event.details["versions"] == 1 and event.details["files"] >= len(old_files)
    assert "pruned old runs" in operator_client.get("/audit/").content.decode()


def test_keep_last_keeps_each_pipelines_newest_runs_and_unfinished_runs_are_never_pruned(files):
    runs = [fanout(seed=str(seed)) for seed in range(4)]
    unfinished, _ready = engine.start_run("flaky_demo", {})
    age([*runs, unfinished], days=90)

    out = prune("--older-than", "30d", "--keep-last", "2")

    assert "Deleted 2 run(s)" in out
    left = set(Run.objects.values_list("pk", flat=True))
    assert left == {runs[2].pk, runs[3].pk, unfinished.pk}
    assert files_of(runs[3]) and not files_of(runs[0])


def test_a_dry_run_says_what_would_go_and_deletes_nothing(files):
    old = fanout()
    age([old], days=31)
    before = files_of(old)

    out = prune("--older-than", "30d", "--keep-last", "0", "--dry-run")

    assert out.startswith("Would delete 1 run(s) with 5 step run(s)")
    assert f"{len(before)} file(s)" in out
    assert Run.objects.filter(pk=old.pk).exists() and files_of(old) == before
    assert not AuditEvent.objects.filter(action=AuditAction.PRUNE).exists()


def test_an_old_run_whose_outputs_a_newer_retry_reuses_is_kept(operator, files):
    failed = engine.run_inline(*engine.start_run("flaky_demo", {"fail": "true"}))
    assert failed.status == Status.FAILED
    age([failed], days=60)
    retry = engine.run_inline(*actions.retry_from_failure(failed, operator))
    reused = retry.step_runs.get(step_name="extract")
    assert reused.reused_from_id and reused.output_path.startswith(f"runs/{failed.pk}/")

    out = prune("--older-than", "30d", "--keep-last", "0")

    assert "Deleted 0 run(s)" in out and "1 whose outputs a newer run reuses" in out
    assert Run.objects.filter(pk=failed.pk).exists()
    assert len(artifacts.load_output(reused.output_path)) == 6  # the retry's input is still there


@pytest.fixture
def fresh_store(settings, tmp_path):
    """An empty artifact store of this test's own (other tests leave files behind)."""
    store = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": tmp_path / "store"}}
    settings.STORAGES = {**settings.STORAGES, "artifacts": store}


def test_directories_of_runs_that_no_longer_exist_are_swept(fresh_store):
    kept = fanout()
    artifacts.write_atomically("runs/987654/left.pkl", lambda path: open(path, "wb").write(b"x" * 100))
    artifacts.write_atomically("logs/987654/left.1.log", lambda path: open(path, "wb").write(b"y" * 50))

    out = prune("--older-than", "30d")

    assert "2 file(s), 150 bytes" in out and "1 directories left by an earlier prune" in out
    assert list(artifacts.walk("runs/987654")) == [] and list(artifacts.walk("logs/987654")) == []
    assert files_of(kept)


@pytest.mark.parametrize("value", ["30", "thirty days", "30y", "-3d", ""])
def test_a_bad_age_is_refused_naming_it(value):
    with pytest.raises(CommandError, match=r"--older-than: .* is not an age: write a whole number and a unit"):
        prune(f"--older-than={value}")


def test_a_negative_keep_last_is_refused():
    with pytest.raises(CommandError, match="--keep-last must be 0 or more"):
        prune("--keep-last", "-1")


def test_a_worker_prunes_once_a_day_when_the_setting_asks_for_it(start_worker, files):
    old = fanout()
    kept = fanout()
    age([old], days=10)

    start_worker(PRUNE_OLDER_THAN_DAYS="7", PRUNE_KEEP_LAST="0", WORKER_BEAT_SECONDS="0.5")

    # The audit event is the prune's last act: rows, then files, then the event.
    event = wait_for(lambda: AuditEvent.objects.filter(action=AuditAction.PRUNE).first(), timeout=60,
                     message="the worker's prune")
    assert not Run.objects.filter(pk=old.pk).exists() and files_of(old) == []
    assert Run.objects.filter(pk=kept.pk).exists() and files_of(kept)
    assert event.username == "daily prune" and event.details["runs"] == 1
