"""The whole model loop through a real worker and the web views: train the example, deploy
it, retrain under a rule, and call the endpoint."""

import json

import pytest

from app.api import tokens
from app.models import Promotion, RegisteredModel, Run, Status, Verdict
from app.runs import paramsets
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def finished(pk):
    run = Run.objects.get(pk=pk)
    return run if run.is_finished else None


def test_train_deploy_retrain_and_predict(worker, operator_client, operator):
    operator_client.post("/pipelines/train_classifier/run/", {
        "dataset": "iris", "n_estimators": "20", "max_depth": "4", "test_size": "0.25", "seed": "1",
    })
    first = wait_for(lambda: finished(Run.objects.get().pk), timeout=60, message="the training run")
    assert first.status == Status.SUCCEEDED
    model = RegisteredModel.objects.get(name="iris-rf")
    version = model.versions.get()
    assert version.version == 1 and version.n_features == 4 and set(version.metrics) == {"accuracy", "f1_macro"}
    page = operator_client.get(f"/runs/{first.pk}/").content.decode()
    assert "iris-rf v1" in page and "Per-class scores on held-out rows" in page and "setosa" in page

    operator_client.post("/models/iris-rf/versions/1/deploy/", {"reason": "first model"})
    assert RegisteredModel.objects.get(name="iris-rf").live.version == version

    # Retrain with a deliberately weak forest under "at least the live accuracy".
    weak = paramsets.create(
        "train_classifier", "weak", {"n_estimators": 1, "max_depth": 1, "seed": 1}, operator
    )
    response = operator_client.post(
        "/models/iris-rf/retrain/", {"parameter_set": weak.pk, "rule": "at_least", "metric": "accuracy"}
    )
    retrain_run = Run.objects.order_by("-id").first()
    assert response["Location"] == f"/runs/{retrain_run.pk}/"
    wait_for(lambda: Promotion.objects.get(run=retrain_run).decided_at, timeout=60, message="the verdict")
    promotion = Promotion.objects.select_related("candidate").get(run=retrain_run)
    assert promotion.candidate.version == 2
    assert promotion.live_value == version.metrics["accuracy"]
    should_deploy = promotion.candidate_value >= promotion.live_value
    assert promotion.verdict == (Verdict.PROMOTED if should_deploy else Verdict.KEPT)
    live = RegisteredModel.objects.get(name="iris-rf").live.version
    assert live.version == (2 if should_deploy else 1)

    secret = tokens.create(operator, "loop")[1]
    answer = operator_client.post(
        "/api/models/iris-rf/predict", data=json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}),
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}",
    ).json()
    assert answer["model"] == "iris-rf" and answer["version"] == live.version
    assert len(answer["predictions"]) == 2 and set(answer["predictions"]) <= {0, 1, 2}
