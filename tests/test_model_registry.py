"""The model registry: registering versions (numbering, lineage, files), deploy, redeploy,
rollback with their production history and audit events, and retrain-and-deploy verdicts."""

import threading

import pytest
from django.db import connection

from app import artifacts
from app.mlmodels import deployments, serving
from app.models import (
    AuditEvent,
    Deployment,
    DeploymentKind,
    ModelVersion,
    Promotion,
    PromotionRule,
    RegisteredModel,
    ResultTable,
    Run,
    StepRun,
    Verdict,
)
from app.runs import engine
from app.tracking import versions
from tests.conftest import make_user, train_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops(db):
    return make_user("otto", "operators")


def test_it_numbers_versions_per_model_name(model_demo):
    assert [train_version().version for _ in range(3)] == [1, 2, 3]
    assert train_version(model="other").version == 1
    assert train_version().version == 4


def test_it_records_lineage_metrics_and_the_file(model_demo):
    version = train_version(constant=7, accuracy=0.8)
    run = version.run
    assert run.status == "succeeded"
    assert version.step_run.step_name == "train"
    assert version.pipeline_name == "t_model_demo"
    assert version.params == {"model": "demo", "constant": 7, "accuracy": 0.8, "fail_after_register": False}
    assert version.snapshot_id == run.snapshot_id
    assert version.metrics == {"accuracy": 0.8, "loss": pytest.approx(0.2)}
    assert version.n_features == 2
    assert version.model.headline_metric == "accuracy"
    assert version.model.pipeline_name == "t_model_demo"
    loaded = serving.load_version(version)
    assert list(loaded.predict([[3.0, 4.0]])) == [7]
    # The step's confusion matrix belongs to its run (and so to the version it registered).
    table = ResultTable.objects.get(run=run)
    assert table.step_run_id == version.step_run_id
    assert table.data == {"labels": ["no", "yes"], "matrix": [[1, 0], [1, 2]]}


def test_it_numbers_concurrent_registrations_without_gaps_or_repeats(model_demo, transactional_db):
    runs = [engine.start_run("t_model_demo", {})[0] for _ in range(8)]
    step_runs = [StepRun.objects.select_related("run").get(run=run) for run in runs]
    barrier = threading.Barrier(len(step_runs))
    errors = []

    def register(step_run):
        try:
            barrier.wait()
            versions.register(step_run, "raced", {"w": step_run.pk}, {"accuracy": 0.5}, "joblib")
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=register, args=(sr,)) for sr in step_runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    numbers = sorted(ModelVersion.objects.filter(model__name="raced").values_list("version", flat=True))
    assert numbers == list(range(1, 9))
    assert RegisteredModel.objects.get(name="raced").latest_version == 8
    # Each number went to a different registration, and each file holds what it registered.
    owners = {serving.load_version(v)["w"] for v in ModelVersion.objects.filter(model__name="raced")}
    assert owners == {sr.pk for sr in step_runs}


@pytest.mark.parametrize("call, message", [
    ("ctx.register_model('bad name!', 1)", "model name 'bad name!' must be"),
    ("ctx.register_model('m', 1, metrics={'acc': 'high'})", "metric 'acc': value 'high' is not a number"),
    ("ctx.register_model('m', 1, metrics={'acc': float('nan')})", "metric 'acc': value nan is not finite"),
    ("ctx.register_model('m', 1, metrics=[0.5])", "metrics must be a dict"),
    ("ctx.register_model('m', 1, format='onnx')", "unknown model format 'onnx' (known formats: joblib)"),
])
def test_a_bad_registration_fails_the_step_with_a_clear_message(define, call, message):
    pipe = define("t_bad_register")

    @pipe.step()
    def register(ctx):
        eval(call)

    run = engine.run_inline(*engine.start_run("t_bad_register", {}))
    assert run.status == "failed"
    assert message in run.step_runs.get().error
    assert not ModelVersion.objects.exists()
    # Nothing half-registered is left in the store either.
    assert not list(artifacts.root().glob("models/m/*"))


def test_deploy_makes_a_version_live_with_history_and_audit(model_demo, ops):
    v1, v2 = train_version(accuracy=0.8), train_version(accuracy=0.9)
    deployments.deploy(v1, ops, "first release")
    deployments.deploy(v2, ops, "better accuracy")
    model = RegisteredModel.objects.get(name="demo")
    assert model.live.version == v2
    history = list(Deployment.objects.filter(model=model).order_by("id"))
    assert [(d.version.version, d.kind, d.reason, d.deployed_by_name) for d in history] == [
        (1, "deploy", "first release", "otto"), (2, "deploy", "better accuracy", "otto"),
    ]
    assert history[0].retired_at == history[1].deployed_at
    assert history[1].retired_at is None
    event = AuditEvent.objects.filter(action="deploy").first()
    assert event.username == "otto" and event.target_label == "demo v2"
    assert event.details == {"reason": "better accuracy", "replaced": "v1"}
    assert AuditEvent.objects.filter(action="deploy").last().details == {"reason": "first release"}


def test_rollback_goes_back_to_the_previous_live_version(model_demo, ops):
    v1, v2, _v3 = train_version(), train_version(), train_version()
    deployments.deploy(v1, ops, "one")
    deployments.deploy(v2, ops, "two")
    model = RegisteredModel.objects.get(name="demo")
    assert deployments.previous_live(model) == v1
    deployment = deployments.rollback(model, ops, "v2 misbehaves")
    assert deployment.kind == DeploymentKind.ROLLBACK and deployment.version == v1
    model.refresh_from_db()
    assert model.live.version == v1
    assert [e.details["reason"] for e in AuditEvent.objects.filter(action="rollback")] == ["v2 misbehaves"]


def test_redeploy_starts_a_new_deployment_of_the_live_version(model_demo, ops):
    v1 = train_version()
    first = deployments.deploy(v1, ops, "one")
    model = RegisteredModel.objects.get(name="demo")
    again = deployments.redeploy(model, ops, "reload after disk repair")
    assert again.version == v1 and again.kind == DeploymentKind.REDEPLOY and again.pk > first.pk
    model.refresh_from_db()
    assert model.live == again
    assert AuditEvent.objects.filter(action="redeploy").count() == 1


@pytest.mark.parametrize("reason, message", [("", "Give a short reason"), ("   ", "Give a short reason"),
                                             ("x" * 201, "keep it to 200")])
def test_a_deploy_needs_a_short_reason(model_demo, ops, reason, message):
    version = train_version()
    with pytest.raises(deployments.DeployRefused, match=message):
        deployments.deploy(version, ops, reason)
    assert not Deployment.objects.exists() and not AuditEvent.objects.filter(action="deploy").exists()


def test_refusals_change_nothing(model_demo, ops):
    v1 = train_version()
    model = RegisteredModel.objects.get(name="demo")
    with pytest.raises(deployments.DeployRefused, match="nothing to redeploy"):
        deployments.redeploy(model, ops, "why not")
    with pytest.raises(deployments.DeployRefused, match="no earlier live version"):
        deployments.rollback(model, ops, "why not")
    deployments.deploy(v1, ops, "one")
    with pytest.raises(deployments.DeployRefused, match="already live"):
        deployments.deploy(v1, ops, "again")
    model.refresh_from_db()
    with pytest.raises(deployments.DeployRefused, match="no earlier live version"):
        deployments.rollback(model, ops, "why not")
    assert Deployment.objects.count() == 1


def test_a_version_from_a_failed_step_cannot_go_live(model_demo, ops):
    run = engine.run_inline(*engine.start_run("t_model_demo", {"fail_after_register": True}))
    assert run.status == "failed"
    version = ModelVersion.objects.get(run=run)
    with pytest.raises(deployments.DeployRefused, match="did not succeed"):
        deployments.deploy(version, ops, "try")
    assert not Deployment.objects.exists()


def test_a_version_whose_file_is_gone_cannot_go_live(model_demo, ops):
    version = train_version()
    artifacts.resolve(version.file_path).unlink()
    with pytest.raises(deployments.DeployRefused, match="cannot be loaded"):
        deployments.deploy(version, ops, "try")
    assert not Deployment.objects.exists()


def test_a_stored_path_outside_the_store_is_never_loaded(model_demo, ops):
    version = train_version()
    ModelVersion.objects.filter(pk=version.pk).update(file_path="../../etc/passwd")
    version.refresh_from_db()
    with pytest.raises(deployments.DeployRefused, match="outside the artifact store"):
        deployments.deploy(version, ops, "try")


# --- retrain and deploy ------------------------------------------------------------------


def retrain_run(ops, rule, metric="accuracy", **params):
    """A t_model_demo run under a promotion rule, run inline; the decided Promotion."""
    run, ready = engine.start_run("t_model_demo", params, user=ops)
    model = RegisteredModel.objects.get(name=params.get("model", "demo"))
    Promotion.objects.create(run=run, model=model, rule=rule, metric=metric, requested_by=ops)
    engine.run_inline(run, ready)
    return Promotion.objects.select_related("candidate", "live_version").get(run=run)


@pytest.mark.parametrize("rule, new, promoted", [
    (PromotionRule.AT_LEAST, 0.95, True), (PromotionRule.AT_LEAST, 0.90, True), (PromotionRule.AT_LEAST, 0.85, False),
    (PromotionRule.AT_MOST, 0.85, True), (PromotionRule.AT_MOST, 0.95, False),
])
def test_a_promotion_rule_deploys_only_a_version_that_passes_it(model_demo, ops, rule, new, promoted):
    live = train_version(accuracy=0.9)
    deployments.deploy(live, ops, "baseline")
    promotion = retrain_run(ops, rule, accuracy=new)
    model = RegisteredModel.objects.select_related("live__version").get(name="demo")
    assert promotion.verdict == (Verdict.PROMOTED if promoted else Verdict.KEPT)
    assert (promotion.candidate_value, promotion.live_value) == (new, 0.9)
    assert promotion.candidate.version == 2 and promotion.live_version == live
    assert promotion.decided_at is not None
    assert ("0.9" in promotion.message) and (f"{new:.4g}" in promotion.message)
    if promoted:
        assert model.live.version == promotion.candidate
        assert model.live.kind == DeploymentKind.PROMOTE and model.live.deployed_by_name == "otto"
        assert AuditEvent.objects.filter(action="promote").count() == 1
    else:
        assert model.live.version == live
        assert not AuditEvent.objects.filter(action="promote").exists()


def test_never_auto_deploy_records_the_numbers_but_keeps_the_live_version(model_demo, ops):
    live = train_version(accuracy=0.5)
    deployments.deploy(live, ops, "baseline")
    promotion = retrain_run(ops, PromotionRule.NEVER, accuracy=0.99)
    assert promotion.verdict == Verdict.KEPT and "never auto-deploy" in promotion.message
    assert (promotion.candidate_value, promotion.live_value) == (0.99, 0.5)
    assert RegisteredModel.objects.get(name="demo").live.version == live


def test_with_nothing_live_the_rule_deploys_the_new_version(model_demo, ops):
    train_version(accuracy=0.5)
    promotion = retrain_run(ops, PromotionRule.AT_LEAST, accuracy=0.6)
    assert promotion.verdict == Verdict.PROMOTED and "no version was live" in promotion.message
    assert RegisteredModel.objects.get(name="demo").live.version == promotion.candidate


def test_a_failed_retrain_run_deploys_nothing(model_demo, ops):
    live = train_version(accuracy=0.5)
    deployments.deploy(live, ops, "baseline")
    promotion = retrain_run(ops, PromotionRule.AT_LEAST, accuracy=0.99, fail_after_register=True)
    assert promotion.run.status == "failed"
    assert promotion.verdict == Verdict.KEPT and promotion.message == "not deployed: the run failed"
    assert RegisteredModel.objects.get(name="demo").live.version == live


def test_a_missing_metric_keeps_the_live_version(model_demo, ops):
    live = train_version(accuracy=0.5)
    deployments.deploy(live, ops, "baseline")
    promotion = retrain_run(ops, PromotionRule.AT_LEAST, metric="recall", accuracy=0.99)
    assert promotion.verdict == Verdict.KEPT and "has no metric 'recall'" in promotion.message
    assert RegisteredModel.objects.get(name="demo").live.version == live


def test_runs_without_a_rule_are_left_alone(model_demo):
    train_version()
    assert not Promotion.objects.exists()
    assert Run.objects.get().status == "succeeded"
