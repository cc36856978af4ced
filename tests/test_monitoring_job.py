"""The worker's monitoring job, through a real worker process: it rolls the prediction log
up per minute and promotes a shadow whose period is over, with no one on the page; a part
that fails is shown on the dashboard while the others still run."""

import datetime
import uuid

import pytest
from django.db import transaction
from django.utils import timezone

from app.mlmodels import deployments, trials
from app.models import (
    Deployment,
    DeploymentKind,
    Lease,
    Prediction,
    PredictionMinute,
    RegisteredModel,
    Role,
    Trial,
    TrialOutcome,
)
from tests.conftest import database_refusing, train_version, wait_for

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



def test_a_failing_part_is_shown_on_the_dashboard_and_the_others_still_run(model_demo, operator, operator_client,
                                                                            start_worker):
    v1 = train_version(constant=3)
    deployments.deploy(v1, operator, "first")
    v2 = train_version(constant=8)
    model = RegisteredModel.objects.get(name="demo")
    with transaction.atomic():
        trials.start_locked(deployments.lock_model(model.pk), v2, "shadow", 0, operator, "short",
                            promote_after=timezone.now())
    Prediction.objects.create(uid=uuid.uuid4(), model=model, version=v1, at=timezone.now() - datetime.timedelta(minutes=3),
                              latency_ms=2.0, status=200, n_instances=1)
    with database_refusing("app_predictionminute"):
        start_worker(MONITORING_SECONDS="0.5", WORKER_BEAT_SECONDS="0.5")
        lease = wait_for(lambda: Lease.objects.filter(name="monitoring").exclude(problem="").first(), timeout=30,
                         message="the monitoring job recorded as failing")
        assert "rolling up the prediction log: " in lease.problem and ("disk is full" in lease.problem or "No space left" in lease.problem)
        # The shadow period still ended: one failing part does not stop the others.
        wait_for(lambda: RegisteredModel.objects.get(pk=model.pk).live.version_id == v2.pk, timeout=30,
                 message="v2 promoted despite the failing roll-up")
        page = operator_client.get("/dashboard/").content.decode()
        assert "Periodic work that is failing" in page and "Monitoring the live models" in page
        assert "rolling up the prediction log" in page
    wait_for(lambda: Lease.objects.get(name="monitoring").problem == "", timeout=30,
             message="the problem cleared once the roll-up works again")
    assert PredictionMinute.objects.filter(version=v1).exists()
    assert "Monitoring the live models" not in operator_client.get("/dashboard/").content.decode()
