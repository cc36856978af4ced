"""The artifact store for several machines: with ARTIFACTS_URL=s3://… outputs, model files
and step logs live in a bucket (moto's S3 server on loopback stands in for S3, the one
boundary here we do not own); and a worker whose store is not the database's stops at start."""

import datetime
import os
import subprocess
import sys
import threading
import uuid

import boto3
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from moto.server import ThreadedMotoServer

from app import artifacts
from app.api import tokens
from app.mlmodels import deployments, serving
from app.models import ModelVersion, Run, Status, StoreMarker
from app.ops import retention
from app.runs import actions, engine, store_check
from app.settings import artifact_storage
from tests.conftest import ROOT, make_user, process_env, served, wait_for

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_S3_REGION_NAME": "us-east-1"}
REFUSAL = "is not the one this database uses: with several machines DATA_DIR must be shared, or set ARTIFACTS_URL"


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class Bucket:
    """A fresh bucket on the moto server, and the environment that points a process at it."""

    def __init__(self, endpoint):
        self.name = f"mlops-{uuid.uuid4().hex[:12]}"
        self.env = {**CREDENTIALS, "ARTIFACTS_URL": f"s3://{self.name}/store", "AWS_S3_ENDPOINT_URL": endpoint}
        self.client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )
        self.client.create_bucket(Bucket=self.name)

    def keys(self, prefix=""):
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=f"store/{prefix}")
        return [item["Key"].removeprefix("store/") for page in pages for item in page.get("Contents", ())]


@pytest.fixture
def bucket(s3_endpoint, settings, monkeypatch):
    """This process's artifact store is a new bucket (settings rebuilt from the same
    environment a worker gets, through app.settings.artifact_storage)."""
    bucket = Bucket(s3_endpoint)
    for name, value in bucket.env.items():
        monkeypatch.setenv(name, value)
    settings.ARTIFACTS_URL = bucket.env["ARTIFACTS_URL"]
    settings.STORAGES = {**settings.STORAGES, "artifacts": artifact_storage(settings.ARTIFACTS_URL)}  # resets storages
    monkeypatch.setattr(serving, "_held", {})  # models held by this process from earlier tests
    bucket.local_before = local_files(settings)
    return bucket


def finished_run(pk):
    run = Run.objects.get(pk=pk)
    return run if run.is_finished else None


def local_files(settings) -> dict:
    """Every file in the local artifact directory, with the time it was last written."""
    return {path: path.stat().st_mtime_ns for path in settings.ARTIFACTS_DIR.glob("**/*") if path.is_file()}


# --- settings ------------------------------------------------------------------------------


def test_without_artifacts_url_the_store_is_the_directory_in_data_dir(settings):
    assert artifact_storage(None) == {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": settings.ARTIFACTS_DIR},
    }


def test_an_s3_url_gives_the_bucket_prefix_and_aws_settings(monkeypatch):
    monkeypatch.setenv("AWS_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("AWS_S3_REGION_NAME", "eu-west-1")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)

    config = artifact_storage("s3://team-artifacts/mlops/prod/")

    assert config["BACKEND"] == "storages.backends.s3.S3Storage"
    assert config["OPTIONS"] == {
        "bucket_name": "team-artifacts", "location": "mlops/prod", "file_overwrite": True,
        "endpoint_url": "http://minio:9000", "region_name": "eu-west-1",
    }


@pytest.mark.parametrize("url", ["s3://", "http://bucket/x", "s3://Bad_Bucket/x", "s3://b/x?y=1", "s3://bucket/a//b", "s3://bucket/../x"])
def test_a_malformed_artifacts_url_stops_start_up_naming_the_variable(url):
    with pytest.raises(ImproperlyConfigured, match="ARTIFACTS_URL="):
        artifact_storage(url)


# --- in the bucket -------------------------------------------------------------------------


@pytest.fixture
def diamond(define):
    """t_s3_diamond: top → left, right → bottom; `right` fails while BROKEN says so."""
    pipe = define("t_s3_diamond")
    calls, broken = [], {"right": True}

    @pipe.step()
    def top(ctx):
        calls.append("top")
        return 10

    @pipe.step(after=[top])
    def left(ctx, top):
        calls.append("left")
        return top + 1

    @pipe.step(after=[top])
    def right(ctx, top):
        calls.append("right")
        if broken["right"]:
            raise RuntimeError("right is broken")
        return top * 2

    @pipe.step(after=[left, right])
    def bottom(ctx, left, right):
        calls.append("bottom")
        return left + right

    return calls, broken


@pytest.mark.django_db
def test_a_retry_from_failure_reuses_the_outputs_kept_in_the_bucket(bucket, diamond, operator, settings):
    settings.STEP_OUTPUT_INLINE_BYTES = 0  # these outputs are small: make them files
    calls, broken = diamond
    failed = engine.run_inline(*engine.start_run("t_s3_diamond", {}))
    broken["right"] = False
    calls.clear()

    retry = engine.run_inline(*actions.retry_from_failure(failed, operator))

    bottom = retry.step_runs.get(step_name="bottom")
    assert (failed.status, retry.status) == (Status.FAILED, Status.SUCCEEDED)
    assert calls == ["right", "bottom"]  # top and left were not run again: their outputs came from the bucket
    assert artifacts.load_output(bottom.output_path) == 31
    assert {f"runs/{failed.pk}/top.pkl", f"runs/{failed.pk}/left.pkl"} <= set(bucket.keys())
    assert local_files(settings) == bucket.local_before


@pytest.mark.django_db
def test_a_small_output_is_kept_in_the_database_not_put_in_the_bucket(bucket, define, settings):
    pipe = define("t_s3_small")
    pipe.step(name="tiny")(lambda ctx: {"rows": 3})
    pipe.step(name="wide")(lambda ctx: list(range(5000)))

    run = engine.run_inline(*engine.start_run("t_s3_small"))

    steps = {sr.step_name: sr for sr in run.step_runs.all()}
    assert [artifacts.load_output(sr.output_path, sr.output_inline) for sr in (steps["tiny"], steps["wide"])] == [
        {"rows": 3}, list(range(5000)),
    ]
    assert bucket.keys(f"runs/{run.pk}/") == [f"runs/{run.pk}/wide.pkl"]  # one PUT, for the output over the limit
    assert local_files(settings) == bucket.local_before


@pytest.mark.django_db
def test_prune_deletes_an_old_runs_objects_and_scratch_and_keeps_the_deployed_versions(bucket, model_demo, operator, settings):
    settings.STEP_OUTPUT_INLINE_BYTES = 0
    old = engine.run_inline(*engine.start_run("t_model_demo", {"model": "s3kept"}))
    deployments.deploy(ModelVersion.objects.get(run=old), operator, "live")
    gone = engine.run_inline(*engine.start_run("t_model_demo", {"model": "s3gone"}))
    artifacts.step_dir(gone.pk, "train")  # scratch space of the run on this machine
    Run.objects.update(created_at=timezone.now() - datetime.timedelta(days=40), finished_at=timezone.now() - datetime.timedelta(days=40))
    gone_version = ModelVersion.objects.get(run=gone)
    assert bucket.keys(f"runs/{gone.pk}/") and gone_version.file_path in bucket.keys("models/")

    report = retention.prune(datetime.timedelta(days=30), 0)

    assert (report.runs, report.versions, report.kept_for_models) == (1, 1, 1)
    assert bucket.keys(f"runs/{gone.pk}/") == bucket.keys(f"logs/{gone.pk}/") == []
    assert gone_version.file_path not in bucket.keys("models/")
    assert not (settings.ARTIFACTS_SCRATCH_DIR / "runs" / str(gone.pk)).exists()
    kept = ModelVersion.objects.get(run=old)
    assert kept.file_path in bucket.keys("models/") and bucket.keys(f"runs/{old.pk}/")
    assert serving.predict("s3kept", {"instances": [[0.0, 1.0]]})["predictions"] == [1]


def test_a_steps_own_directory_is_scratch_space_on_this_machine(bucket, settings):
    assert artifacts.step_dir(7, "train") == settings.ARTIFACTS_SCRATCH_DIR / "runs/7/train"
    assert artifacts.step_dir(7, "train").is_dir()


@pytest.mark.django_db
def test_a_stored_name_leaving_the_store_is_refused(bucket):
    for name in ("../outside.pkl", "/etc/passwd", "runs/../../x", "runs//x"):
        with pytest.raises(artifacts.ArtifactError, match="outside the artifact store"):
            artifacts.load_output(name)


@pytest.fixture
def chatty(define):
    """t_s3_chatty: one step printing `lines` numbered lines of `width` characters; with
    `wait`, it prints one line and waits for the test to let it finish."""
    from app.pipelines import Params, param

    class ChattyParams(Params):
        lines: int = param(10, ge=0, le=1_000_000)
        width: int = param(20, ge=1, le=10_000)
        wait: bool = param(False)

    pipe = define("t_s3_chatty", params=ChattyParams)
    release = threading.Event()

    @pipe.step()
    def talk(ctx):
        if ctx.params.wait:
            print("halfway there", flush=True)
            release.wait(30)
        for i in range(ctx.params.lines):
            print(f"line {i:07d} " + "x" * ctx.params.width)

    return release


@pytest.mark.django_db
def test_the_step_page_shows_the_end_of_a_log_in_the_bucket_and_the_download_is_whole(bucket, chatty, operator_client, settings):
    run = engine.run_inline(*engine.start_run("t_s3_chatty", {"lines": 5000, "width": 100}))  # ~540 KB: 9 chunks

    page = operator_client.get(f"/runs/{run.pk}/steps/talk/").content.decode()
    download = operator_client.get(f"/runs/{run.pk}/steps/talk/log/1/")

    assert "line 0004999" in page and "line 0004800" in page and "line 0004799" not in page
    assert "Showing the end of the log (at most 200 lines)." in page
    whole = b"".join(download.streaming_content).decode()
    assert download.status_code == 200 and download["Content-Type"] == "text/plain; charset=utf-8"
    assert whole.count("\n") == 5000 and whole.startswith("line 0000000 ") and "line 0004999 " in whole
    assert local_files(settings) == bucket.local_before


@pytest.mark.django_db
def test_a_log_in_the_bucket_keeps_its_cap(bucket, chatty, operator_client, settings):
    settings.STEP_LOG_MAX_BYTES = 100_000
    run = engine.run_inline(*engine.start_run("t_s3_chatty", {"lines": 2000, "width": 1000}))  # ~2 MB

    whole = b"".join(operator_client.get(f"/runs/{run.pk}/steps/talk/log/1/").streaming_content)

    assert 100_000 < len(whole) < 101_000
    assert b"more bytes were dropped: an attempt's log is kept up to 100,000 bytes (STEP_LOG_MAX_BYTES)" in whole


@pytest.mark.django_db(transaction=True)
def test_a_running_steps_log_in_the_bucket_is_shown_while_it_runs(bucket, chatty, operator_client):
    run, ready = engine.start_run("t_s3_chatty", {"lines": 1, "wait": True})
    step = threading.Thread(target=engine.run_inline, args=(run, ready))
    step.start()
    try:
        # The line was printed into a buffer; the capture puts it in the bucket within a second.
        page = wait_for(
            lambda: (content := operator_client.get(f"/runs/{run.pk}/steps/talk/").content.decode())
            and "halfway there" in content and content,
            timeout=10, message="the printed line on the step page",
        )
        assert run.step_runs.get().status == Status.RUNNING
        assert "halfway there" in page
    finally:
        chatty.set()
        step.join(30)
    assert Run.objects.get(pk=run.pk).status == Status.SUCCEEDED


# --- through a worker ----------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_run_on_a_worker_keeps_outputs_and_model_in_the_bucket_and_the_model_serves(
    bucket, start_worker, operator_client, settings, client
):
    worker = start_worker(**bucket.env)
    operator_client.post("/pipelines/train_classifier/run/", {
        "dataset": "iris", "n_estimators": "5", "max_depth": "3", "test_size": "0.25", "seed": "1",
    })

    run = wait_for(lambda: finished_run(Run.objects.get().pk), timeout=90, message="the run to finish")
    steps = {sr.step_name: sr for sr in run.step_runs.all()}
    assert run.status == Status.SUCCEEDED, worker.log_path.read_text()
    assert all(sr.worker.split(":")[1] == str(worker.pid) for sr in steps.values())
    assert artifacts.load_output(steps["load"].output_path)["X"].shape == (150, 4)
    assert f"{steps['load'].output_path}" in bucket.keys("runs/")
    assert "loaded iris: 150 rows, 4 features" in operator_client.get(f"/runs/{run.pk}/steps/load/").content.decode()
    version = ModelVersion.objects.select_related("model").get(run=run)
    assert version.file_path in bucket.keys("models/")
    assert local_files(settings) == bucket.local_before  # nothing went to this machine's disk

    operator = make_user("otto", "operators")
    deployments.deploy(version, operator, "from the bucket")
    secret = tokens.create(operator, "tests")[1]
    response = client.post(
        f"/api/models/{version.model.name}/predict", data={"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert response.status_code == 200
    assert served(response.json()) == {"model": "iris-rf", "version": version.version, "predictions": [0, 2]}


def refusing_worker(tmp_path, **env):
    """Start a worker the way start_worker does, for one that is meant to stop at once."""
    log_path = tmp_path / "refused-worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "run_huey"], cwd=ROOT, env=process_env(HUEY_WORKERS="2", **env),
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"the worker did not stop: {log_path.read_text()}") from None
    return code, log_path.read_text()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_with_a_data_dir_of_its_own_stops_at_start_saying_why(tmp_path, settings):
    store_check.check()  # this process (the web, say) made the store's id
    elsewhere = tmp_path / "another-machine"

    code, output = refusing_worker(tmp_path, DATA_DIR=str(elsewhere))

    assert code == 2
    lines = [line for line in output.splitlines() if REFUSAL in line]
    assert len(lines) == 1 and f"the artifact store at {elsewhere / 'artifacts'} {REFUSAL}" in lines[0]
    assert "Traceback" not in output
    assert StoreMarker.objects.count() == 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_without_the_bucket_stops_at_start_saying_why(bucket, tmp_path, settings):
    marker = store_check.check()
    assert bucket.keys("store-id") == ["store-id"]

    env = {name: value for name, value in os.environ.items() if name.startswith("AWS_") or name == "ARTIFACTS_URL"}
    code, output = refusing_worker(tmp_path, **dict.fromkeys(env, ""))  # empty is unset (app.settings.env_str)

    assert code == 2
    assert f"the artifact store at {settings.ARTIFACTS_DIR} {REFUSAL}" in output
    assert StoreMarker.objects.get().store_id == marker


@pytest.mark.django_db
def test_the_first_check_creates_the_id_in_the_database_and_the_store_and_later_ones_agree(bucket):
    first = store_check.check()

    assert store_check.check() == first
    assert artifacts.read_store_id() == first == StoreMarker.objects.get().store_id
