"""The worker's monitoring job, through a real worker process: it rolls the prediction log
up per minute and promotes a shadow whose period is over, with no one on the page."""

import datetime
import uuid

import pytest
from django.db import transaction
from django.utils import timezone

from app.mlmodels import deployments, trials
from app.models import Deployment, DeploymentKind, Prediction, PredictionMinute, RegisteredModel, Role, Trial, TrialOutcome
from tests.conftest import train_version, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_worker_rolls_the_log_up_and_ends_a_shadow_period(model_demo, operator, start_worker):
    v1 = train_version(constant=3)
    deployments.deploy(v1, operator, "first")
    v2 = train_version(constant=8)
    model = RegisteredModel.objects.get(name="demo")
    with transaction.atomic():
        locked = deployments.lock_model(model.pk)
        trials.start_locked(locked, v2, "shadow", 0, operator, "a short shadow period",
                            promote_after=timezone.now() + datetime.timedelta(seconds=2))
    three_minutes_ago = timezone.now() - datetime.timedelta(minutes=3)
    Prediction.objects.bulk_create([
        Prediction(uid=uuid.uuid4(), model=model, version=v1, role=Role.LIVE, at=three_minutes_ago, latency_ms=2.0 + i,
                   status=200 if i % 5 else 400, n_instances=1)
        for i in range(20)
    ])

    start_worker(MONITORING_SECONDS="0.5", WORKER_BEAT_SECONDS="0.5")

    minute = wait_for(lambda: PredictionMinute.objects.filter(version=v1).first(), timeout=30,
                      message="the log rolled up by the worker")
    assert (minute.requests, minute.errors_4xx, minute.errors_5xx, minute.role) == (20, 4, 0, Role.LIVE)
    live = wait_for(lambda: (m := RegisteredModel.objects.get(pk=model.pk)).live.version_id == v2.pk and m.live,
                    timeout=30, message="v2 promoted when its shadow period ended")
    assert Deployment.objects.get(pk=live.pk).kind == DeploymentKind.TRIAL
    trial = Trial.objects.get()
    assert trial.outcome == TrialOutcome.PROMOTED and trial.ended_at >= trial.promote_after
