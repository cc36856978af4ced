"""The prediction log under load, through a real gunicorn: every request is in the log once,
with its status, whichever web process answered it; a log that cannot be written never
fails a prediction, and what it kept is written once the database takes it again."""

import datetime
import json
import threading
import urllib.error
import urllib.request
import uuid

import pytest
from django.utils import timezone

from app.api import tokens
from app.mlmodels import deployments, predlog
from app.mlmodels.predlog import prediction_log
from app.models import Feedback, Prediction, PredictionMinute, Role
from tests.conftest import database_refusing, gunicorn, process_env, train_version, wait_for


URL = "/api/models/demo/predict"
CLIENTS = 8
EACH = 60


def call(base, secret, body) -> tuple[int, dict]:
    request = urllib.request.Request(
        base + URL, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.fixture
def live(model_demo, operator):
    """demo v1 (predicts 3) live, and an operator's token."""
    version = train_version(constant=3)
    deployments.deploy(version, operator, "first")
    return version, tokens.create(operator, "load")[1]


def hammer(base, secret) -> tuple[list, list, list]:
    """CLIENTS threads, EACH requests each, every sixth with a bad body: (ids answered 200,
    number of 400s, failures)."""
    answered, refused, failures = [], [], []

    def client(n):
        for i in range(EACH):
            bad = (n * EACH + i) % 6 == 0
            body = {"instances": [[1.0, "x"]]} if bad else {"instances": [[float(i), float(n)], [0.0, 1.0]]}
            try:
                status, answer = call(base, secret, body)
            except OSError as exc:  # a refused or dropped connection: the server failed
                failures.append(repr(exc))
                continue
            if status == 200 and not bad:
                answered.append(answer["id"])
            elif status == 400 and bad:
                refused.append(answer["error"])
            else:
                failures.append((status, answer))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answered, refused, failures


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_under_load_every_request_is_in_the_log_once(live, tmp_path):
    version, secret = live
    with gunicorn(tmp_path / "gunicorn.log", process_env(PREDICTION_SAMPLE_RATE="0.5"), workers=2) as base:
        answered, refused, failures = hammer(base, secret)
        assert failures == []
        assert len(answered) + len(refused) == CLIENTS * EACH and len(refused) == CLIENTS * EACH // 6
        # Each process writes its buffer every second: wait for all of them.
        wait_for(lambda: Prediction.objects.count() == CLIENTS * EACH, timeout=30,
                 message=f"{CLIENTS * EACH} requests in the prediction log")
    rows = Prediction.objects.filter(status=200)
    assert sorted(str(uid) for uid in rows.values_list("uid", flat=True)) == sorted(answered)
    assert set(rows.values_list("version_id", "role", "n_instances")) == {(version.pk, Role.LIVE, 2)}
    assert Prediction.objects.filter(status=400, error__contains="is not a finite number").count() == len(refused)
    # Sampling kept the inputs of about half of the good requests, and only theirs.
    sampled = rows.filter(sampled=True)
    assert 0.3 * len(answered) < sampled.count() < 0.7 * len(answered)
    assert all(len(inputs) == 2 for inputs in sampled.values_list("inputs", flat=True))
    assert not rows.filter(sampled=False, inputs__isnull=False).exists()



@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_log_that_cannot_be_written_never_fails_a_prediction_and_loses_nothing(live, tmp_path):
    version, secret = live
    log_path = tmp_path / "gunicorn.log"
    with gunicorn(log_path, process_env(), workers=1) as base:
        with database_refusing("app_prediction"):
            answers = [call(base, secret, {"instances": [[0.0, float(i)]]}) for i in range(30)]
            assert {(status, answer["version"], tuple(answer["predictions"])) for status, answer in answers} == {
                (200, 1, (3,))}
            # The operator is told why in the server's log; nothing was written meanwhile.
            wait_for(lambda: "the prediction log could not be written" in log_path.read_text(), timeout=15,
                     message="the log's warning")
            assert Prediction.objects.count() == 0
        wait_for(lambda: Prediction.objects.count() == 30, timeout=15, message="the kept records written")
    assert sorted(str(uid) for uid in Prediction.objects.values_list("uid", flat=True)) == sorted(
        answer["id"] for _status, answer in answers)
    assert "kept for the next try" in log_path.read_text()



@pytest.mark.django_db
def test_the_log_keeps_prediction_log_days_and_the_predictions_with_feedback(live, settings):
    version, _secret = live
    settings.PREDICTION_LOG_DAYS = 30
    now = timezone.now()

    def row(days_ago):
        return Prediction.objects.create(
            uid=uuid.uuid4(), model=version.model, version=version, at=now - datetime.timedelta(days=days_ago),
            latency_ms=1.0, status=200, n_instances=1, outputs=[3])

    _old, recent, labelled = row(31), row(29), row(40)
    Feedback.objects.create(prediction=labelled, model=version.model, version=version, labels=[3], n=1, correct=1,
                            at=labelled.at)
    for days_ago in (31, 29):
        PredictionMinute.objects.create(model=version.model, version=version, minute=now - datetime.timedelta(days=days_ago))
    assert predlog.prune(now=now) == 1
    assert set(Prediction.objects.values_list("pk", flat=True)) == {recent.pk, labelled.pk}
    assert [m.date() for m in PredictionMinute.objects.values_list("minute", flat=True)] == [
        (now - datetime.timedelta(days=29)).date()]
    settings.PREDICTION_LOG_DAYS = 0  # for ever
    assert predlog.prune(now=now + datetime.timedelta(days=365)) == 0 and Prediction.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_record_the_database_refuses_is_dropped_and_never_holds_the_others_back(live, caplog):
    """A model deleted while its records wait in the buffer: those records cannot be written
    as they are; the rest of the batch is, and later batches are not blocked behind them."""
    version, _secret = live
    good = dict(model_id=version.model_id, version_id=version.pk, role=Role.LIVE, at=timezone.now(), latency_ms=1.0,
                status=200, n_instances=1)
    orphan = dict(good, model_id=version.model_id + 1000, version_id=None)
    prediction_log.buffer.extend([dict(good, uid=uuid.uuid4()), dict(orphan, uid=uuid.uuid4()), dict(good, uid=uuid.uuid4())])
    assert prediction_log.flush() == 2
    assert Prediction.objects.count() == 2 and not prediction_log.buffer
    assert "dropped 1 record(s) the database refused" in caplog.text
    prediction_log.buffer.append(dict(good, uid=uuid.uuid4()))
    assert prediction_log.flush() == 1 and Prediction.objects.count() == 3
    # A batch the database refuses whole looks like an outage: kept, not dropped, until a
    # batch shows the database takes other records.
    prediction_log.buffer.append(dict(orphan, uid=uuid.uuid4()))
    assert prediction_log.flush() == 0 and len(prediction_log.buffer) == 1
    prediction_log.buffer.append(dict(good, uid=uuid.uuid4()))
    assert prediction_log.flush() == 1 and not prediction_log.buffer and Prediction.objects.count() == 4
