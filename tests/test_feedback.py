"""Feedback: true labels sent back for predictions through the API, compared with the kept
answer (classes: correct or not; numbers: absolute error), every refusal naming what is
wrong and changing nothing, and the model page's live accuracy next to the offline metric."""

import json
import urllib.error
import urllib.request
import uuid

import pytest
from django.test import Client, override_settings
from django.utils import timezone
from sklearn.dummy import DummyRegressor

from app.api import tokens
from app.mlmodels import deployments
from app.models import Feedback, ModelVersion, Prediction, Role, TokenScope
from app.runs import engine
from tests.conftest import make_user, train_version, wait_for

pytestmark = pytest.mark.django_db

PREDICT = "/api/models/demo/predict"
FEEDBACK = "/api/models/demo/feedback"


@pytest.fixture
def ops(db):
    return make_user("otto", "operators")


@pytest.fixture
def secret(ops):
    return tokens.create(ops, "client")[1]


@pytest.fixture
def deployed(model_demo, ops):
    """demo v1, live: it answers 3 for every instance; its offline accuracy is 0.9."""
    version = train_version(constant=3)
    deployments.deploy(version, ops, "first")
    return version


def post(secret, url, body):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret else {}
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return Client().post(url, data=data, content_type="application/json", **headers)


def predict(secret, instances, url=PREDICT) -> str:
    response = post(secret, url, {"instances": instances})
    assert response.status_code == 200, response.content
    return response.json()["id"]


def test_it_compares_labels_with_the_answer_and_the_model_page_shows_the_accuracy(deployed, secret, operator_client):
    prediction_id = predict(secret, [[0, 0], [1, 1], [2, 2], [3, 3]])
    response = post(secret, FEEDBACK, {"prediction_id": prediction_id, "labels": [3, 3, 3, 1]})
    assert response.status_code == 201, response.content
    answer = response.json()
    assert {k: answer[k] for k in ("model", "version", "labels", "compared", "correct")} == {
        "model": "demo", "version": 1, "labels": 4, "compared": 4, "correct": 3}
    feedback = Feedback.objects.get()
    assert (feedback.prediction.uid, feedback.version, feedback.n, feedback.correct) == (
        uuid.UUID(prediction_id), deployed, 4, 3)

    page = operator_client.get("/models/demo/").content.decode()
    card = page[page.index('id="feedback"'):]
    assert '<div class="value">75.0 %</div>' in card  # live accuracy
    assert "offline accuracy at training: <strong>90.0 %</strong>" in card  # v1's, beside it
    assert "labelled prediction (4 instances): <strong>100 %</strong> of the 1 answered" in card
    assert "<svg" in card and "v1 live" in card and "v1 offline (accuracy)" in card


def test_a_one_instance_prediction_takes_a_single_label(deployed, secret):
    prediction_id = predict(secret, [[0, 0]])
    response = post(secret, FEEDBACK, {"prediction_id": prediction_id, "label": 4})
    assert response.status_code == 201, response.content
    assert response.json()["correct"] == 0
    assert Feedback.objects.get().labels == [4]


def test_a_whole_number_written_as_a_float_is_the_same_class(deployed, secret):
    prediction_id = predict(secret, [[0, 0]])
    assert post(secret, FEEDBACK, {"prediction_id": prediction_id, "labels": [3.0]}).json()["correct"] == 1


@pytest.mark.parametrize("body, message", [
    ("{not json", "the body is not valid JSON"),
    ([1, 2], "the body must be a JSON object"),
    ({"labels": [3]}, '"prediction_id" is missing'),
    ({"prediction_id": "abc", "labels": [3]}, '"prediction_id" must be the "id" of a prediction answer (a UUID), not'),
    ({"prediction_id": 7, "labels": [3]}, '"prediction_id" must be the "id" of a prediction answer (a UUID), not 7'),
    ({"prediction_id": "@ID"}, '"labels" is missing'),
    ({"prediction_id": "@ID", "labels": 3}, '"labels" must be a non-empty list'),
    ({"prediction_id": "@ID", "labels": []}, '"labels" must be a non-empty list'),
    ({"prediction_id": "@ID", "labels": [3, None]}, "label 1: null is neither a number nor a string"),
    ({"prediction_id": "@ID", "labels": [3, {"a": 1}]}, 'label 1: {"a": 1} is neither a number nor a string'),
    ({"prediction_id": "@ID", "labels": [[3], 3]}, "label 0: [3] is neither a number nor a string"),
    ({"prediction_id": "@ID", "label": [3]}, '"label": [3] is neither a number nor a string'),
    ({"prediction_id": "@ID", "label": 3, "labels": [3, 3]}, 'send either "labels" (one per instance) or "label"'),
    ({"prediction_id": "@ID", "labels": [3]}, '"labels" has 1 label; prediction @ID had 2 instances'),
    ({"prediction_id": "@ID", "labels": [3, 3, 3]}, '"labels" has 3 labels; prediction @ID had 2 instances'),
    ({"prediction_id": "@ID", "label": 3}, 'prediction @ID had 2 instances: send "labels", one per instance'),
    ({"prediction_id": "@ID", "labels": [3, "yes"]}, 'label 1: "yes" is a string; v1 predicts classes that are whole'),
    ({"prediction_id": "@ID", "labels": [3, 2.5]}, "label 1: 2.5 is a fraction; v1 predicts classes that are whole"),
])
def test_a_bad_body_is_a_400_naming_what_is_wrong_and_changes_nothing(deployed, secret, body, message):
    prediction_id = predict(secret, [[0, 0], [1, 1]])
    if isinstance(body, dict):
        body = {k: prediction_id if v == "@ID" else v for k, v in body.items()}
    response = post(secret, FEEDBACK, body)
    assert response.status_code == 400, response.content
    assert message.replace("@ID", prediction_id) in response.json()["error"]
    assert not Feedback.objects.exists()


def test_an_unknown_id_is_a_404_saying_to_retry_if_it_was_just_made(deployed, secret):
    response = post(secret, FEEDBACK, {"prediction_id": str(uuid.uuid4()), "labels": [3]})
    assert response.status_code == 404
    assert "there is no prediction with the id" in response.json()["error"]
    assert "retry in a few seconds" in response.json()["error"]
    assert int(response["Retry-After"]) >= 1


def test_an_unknown_model_is_a_404(deployed, secret):
    prediction_id = predict(secret, [[0, 0]])
    response = post(secret, "/api/models/nope/feedback", {"prediction_id": prediction_id, "labels": [3]})
    assert response.status_code == 404
    assert response.json()["error"] == "there is no model named 'nope'"


def test_the_id_of_another_models_prediction_is_refused_naming_that_model(deployed, secret, ops):
    deployments.deploy(train_version(model="other", constant=1), ops, "second model")
    prediction_id = predict(secret, [[0, 0]], url="/api/models/other/predict")
    response = post(secret, FEEDBACK, {"prediction_id": prediction_id, "labels": [1]})
    assert response.status_code == 400
    assert response.json()["error"] == (f"prediction {prediction_id} was answered by model 'other', not 'demo'; "
                                         "send its feedback to /api/models/other/feedback")
    assert not Feedback.objects.exists()


def test_feedback_sent_twice_is_a_409_saying_when_and_keeps_the_first(deployed, secret):
    prediction_id = predict(secret, [[0, 0]])
    assert post(secret, FEEDBACK, {"prediction_id": prediction_id, "labels": [3]}).status_code == 201
    first = Feedback.objects.get()
    response = post(secret, FEEDBACK, {"prediction_id": prediction_id, "labels": [1]})
    assert response.status_code == 409
    assert response.json()["error"] == (
        f"feedback for prediction {prediction_id} was already sent, at {first.at:%Y-%m-%d %H:%M:%S} UTC; "
        "it is taken once per prediction, and the first one is kept")
    assert list(Feedback.objects.values_list("labels", "correct")) == [([3], 1)]


def test_a_failed_prediction_has_no_answer_to_compare(deployed, secret):
    assert post(secret, PREDICT, {"instances": [[1]]}).status_code == 400  # logged, as a failure
    failed = Prediction.objects.get()
    response = post(secret, FEEDBACK, {"prediction_id": str(failed.uid), "labels": [3]})
    assert response.status_code == 409
    assert "failed (400: instance 0 has 1 features; the model expects 2), so it has no answer" in (
        response.json()["error"])


@override_settings(PREDICTION_SAMPLE_MAX_INSTANCES=2, PREDICTION_SAMPLE_RATE=0)
def test_an_answer_too_large_to_keep_cannot_take_feedback(deployed, secret):
    prediction_id = predict(secret, [[0, 0], [1, 1], [2, 2]])
    assert Prediction.objects.get().outputs is None
    response = post(secret, FEEDBACK, {"prediction_id": prediction_id, "labels": [3, 3, 3]})
    assert response.status_code == 409
    assert response.json()["error"] == (
        f"the answer to prediction {prediction_id} was not kept, so it cannot be compared: answers are kept for "
        "requests of at most 2 instances and it had 3")


@override_settings(PREDICTION_SAMPLE_MAX_INSTANCES=2, PREDICTION_SAMPLE_RATE=1)
def test_a_sampled_large_answer_is_compared_on_the_instances_it_kept(deployed, secret):
    prediction_id = predict(secret, [[0, 0], [1, 1], [2, 2]])
    response = post(secret, FEEDBACK, {"prediction_id": prediction_id, "labels": [3, 1, 3]})
    assert response.status_code == 201, response.content
    assert (response.json()["labels"], response.json()["compared"], response.json()["correct"]) == (3, 2, 1)


def test_a_shadow_answer_is_never_the_target(deployed, secret):
    live_id = predict(secret, [[0, 0]])
    shadow = Prediction.objects.create(
        uid=uuid.uuid4(), model=deployed.model, version=deployed, role=Role.SHADOW, at=timezone.now(),
        latency_ms=1, status=200, n_instances=1, outputs=[3], pair=uuid.UUID(live_id))
    response = post(secret, FEEDBACK, {"prediction_id": str(shadow.uid), "labels": [3]})
    assert response.status_code == 404
    assert not Feedback.objects.exists()


def test_a_stakeholders_token_is_refused(deployed, secret, stakeholder):
    prediction_id = predict(secret, [[0, 0]])
    theirs = tokens.create(stakeholder, "stakeholder's")[1]
    response = post(theirs, FEEDBACK, {"prediction_id": prediction_id, "labels": [3]})
    assert response.status_code == 403
    assert "belongs to a user who is not an operator" in response.json()["error"]
    assert not Feedback.objects.exists()


def test_a_token_without_the_predict_scope_is_refused(deployed, secret, ops):
    prediction_id = predict(secret, [[0, 0]])
    reader = tokens.create(ops, "reader", scopes=[TokenScope.RUNS_READ])[1]
    response = post(reader, FEEDBACK, {"prediction_id": prediction_id, "labels": [3]})
    assert response.status_code == 403
    assert "does not have the scope predict" in response.json()["error"]


def test_no_token_is_a_401(deployed):
    response = post(None, FEEDBACK, {"prediction_id": str(uuid.uuid4()), "labels": [3]})
    assert response.status_code == 401


def test_a_wrong_method_is_a_405(deployed, secret):
    response = Client().get(FEEDBACK, HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 405


def test_a_stakeholder_cannot_see_the_model_page(deployed, stakeholder_client):
    assert stakeholder_client.get("/models/demo/").status_code == 403


def test_the_model_page_explains_how_to_send_feedback_before_any_came(deployed, secret, operator_client):
    predict(secret, [[0, 0]])
    page = operator_client.get("/models/demo/").content.decode()
    card = page[page.index('id="feedback"'):]
    assert "No feedback yet" in card
    assert "curl -X POST http://testserver/api/models/demo/feedback" in card
    assert "&quot;labels&quot;: [3]" in card or '"labels": [3]' in card  # a label of the kind v1 answers


@pytest.fixture
def regressor(define, ops):
    """demo-r v1, live: a regressor that answers 2.5 for every instance (offline mae 0.4)."""
    pipe = define("t_feedback_regressor")

    @pipe.step()
    def train(ctx):
        model = DummyRegressor(strategy="constant", constant=2.5)
        model.fit([[0.0, 0.0], [1.0, 1.0]], [2.5, 2.5])
        ctx.register_model("demo-r", model, metrics={"mae": 0.4})

    run = engine.run_inline(*engine.start_run("t_feedback_regressor", {}))
    version = ModelVersion.objects.get(run=run)
    deployments.deploy(version, ops, "regressor")
    return version


def test_numbers_are_compared_by_absolute_error(regressor, secret, operator_client):
    prediction_id = predict(secret, [[0, 0], [1, 1]], url="/api/models/demo-r/predict")
    response = post(secret, "/api/models/demo-r/feedback", {"prediction_id": prediction_id, "labels": [2, 4]})
    assert response.status_code == 201, response.content
    assert response.json()["mean_absolute_error"] == 1.0  # (0.5 + 1.5) / 2
    assert Feedback.objects.get().abs_error_sum == 2.0

    card = operator_client.get("/models/demo-r/").content.decode()
    card = card[card.index('id="feedback"'):]
    assert "live mean absolute error" in card
    assert '<div class="value">1</div>' in card
    assert "offline mae at training: <strong>0.4</strong>" in card
    assert "v1 offline (mae)" in card  # mae measures what the live line does: drawn beside it


def test_a_class_label_for_a_model_that_answers_numbers_is_refused(regressor, secret):
    prediction_id = predict(secret, [[0, 0]], url="/api/models/demo-r/predict")
    response = post(secret, "/api/models/demo-r/feedback", {"prediction_id": prediction_id, "labels": ["high"]})
    assert response.status_code == 400
    assert response.json()["error"] == 'label 0: "high" is not a number; v1 predicts numbers'


@pytest.mark.worker
def test_feedback_right_after_the_answer_is_taken_once_the_log_is_written(model_demo, ops, web_server):
    """A real gunicorn (two processes, each writing its log from a thread): feedback sent
    the moment the answer arrives is either taken (this process's buffer is written first)
    or answered 404 with Retry-After, and taken on a retry."""
    deployments.deploy(train_version(constant=3), ops, "live")
    secret = tokens.create(ops, "client")[1]
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}

    def call(path, body):
        request = urllib.request.Request(web_server + path, data=json.dumps(body).encode(), method="POST",
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.load(response), response.headers
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc), exc.headers

    status, answer, _headers = call(PREDICT, {"instances": [[0, 0], [1, 1]]})
    assert status == 200
    status, body, headers_ = call(FEEDBACK, {"prediction_id": answer["id"], "labels": [3, 0]})
    assert status in (201, 404), body
    if status == 404:
        assert int(headers_["Retry-After"]) >= 1

        def taken():
            result = call(FEEDBACK, {"prediction_id": answer["id"], "labels": [3, 0]})
            assert result[0] in (201, 404), result
            return result if result[0] == 201 else None

        status, body, _h = wait_for(taken, message="the prediction to be logged")
    assert (status, body["correct"]) == (201, 1)
    assert Feedback.objects.get().prediction.uid == uuid.UUID(answer["id"])
