"""Input drift: a version registered with `reference=X_train` keeps a profile of its training
inputs (no raw data); the monitoring job compares the live version's sampled inputs with it
(PSI, Kolmogorov–Smirnov) and the model page shows the scores and both histograms. Unchanged
inputs stay stable, a feature moved by 2 σ is drifted and the worst; a bad reference fails
the step with a clear message and registers nothing."""

import datetime
import json
import uuid

import numpy as np
import pytest
from django.utils import timezone
from sklearn.tree import DecisionTreeClassifier

from app import artifacts
from app.mlmodels import deployments, drift, monitoring, serving, trials
from app.models import (
    AlertChannel,
    AlertRule,
    Condition,
    Delivery,
    DriftReport,
    Incident,
    ModelVersion,
    Prediction,
    ReferenceProfile,
    RegisteredModel,
    Role,
)
from app.ops import alerts
from app.pipelines.registry import Params, param
from app.runs import engine
from tests.conftest import train_version

FEATURES = ["age", "income", "<i>score</i>"]
MEANS = np.array([40.0, 50.0, 0.0])
SDS = np.array([10.0, 15.0, 1.0])


def inputs(n, seed, shift=None) -> np.ndarray:
    """n rows of the three features; `shift` moves one feature's mean by that many σ."""
    rows = np.random.default_rng(seed).normal(MEANS, SDS, size=(n, 3))
    if shift:
        name, sigmas = shift
        j = FEATURES.index(name)
        rows[:, j] += sigmas * SDS[j]
    return rows


BAD = {
    "ragged": [[1.0, 2.0, 3.0]] * 20 + [[1.0, 2.0]],
    "text": [[1.0, 2.0, 3.0]] * 12 + [[1.0, "high", 3.0]],
    "empty": [],
    "wide": np.zeros((20, 1001)),
    "nan": [[1.0, 2.0, 3.0]] * 11 + [[1.0, float("nan"), 3.0]],
    "flat": np.zeros(50),
    "short": [[1.0, 2.0, 3.0]] * 3,
    "narrow": np.zeros((20, 2)),
    "names": "names",
    "orphan": "orphan",
}


class DriftDemoParams(Params):
    bad: str = param("", help="a key of BAD: register with that reference instead")
    with_reference: bool = param(True, help="register with a reference")


pytestmark = pytest.mark.usefixtures("remove_run_files")


@pytest.fixture(autouse=True)
def sampling(settings):
    """Every prediction keeps its inputs; reports are recomputed at every call."""
    settings.PREDICTION_SAMPLE_RATE = 1.0
    settings.DRIFT_EVERY_MINUTES = 0
    serving._held.clear()
    yield
    serving._held.clear()


@pytest.fixture
def drift_demo(define, db):
    """A pipeline `t_drift_demo` that fits a decision tree on 1,000 rows of three features
    and registers it as `drifty` with those rows as its reference."""
    pipe = define("t_drift_demo", params=DriftDemoParams)

    @pipe.step()
    def train(ctx):
        X = inputs(1000, seed=1)
        y = (X[:, 1] > 50).astype(int)
        model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
        if not ctx.params.with_reference:
            ctx.register_model("drifty", model, metrics={"accuracy": 0.9})
        elif ctx.params.bad == "orphan":
            ctx.register_model("drifty", model, reference_predictions=y)
        elif ctx.params.bad == "names":
            ctx.register_model("drifty", model, reference=X, feature_names=["age", "age", "x"])
        elif ctx.params.bad:
            ctx.register_model("drifty", model, reference=BAD[ctx.params.bad])
        else:
            ctx.register_model("drifty", model, metrics={"accuracy": 0.9}, reference=X, feature_names=FEATURES)

    return pipe


def train(**params) -> ModelVersion:
    run = engine.run_inline(*engine.start_run("t_drift_demo", params))
    return ModelVersion.objects.select_related("model").filter(run=run).get()


@pytest.fixture
def live(drift_demo, operator):
    version = train()
    deployments.deploy(version, operator, "first")
    return version


def model_files() -> set:
    folder = artifacts.resolve("models/drifty")
    return set(folder.iterdir()) if folder.exists() else set()


def send(rows: np.ndarray, per_request=100):
    for start in range(0, len(rows), per_request):
        serving.predict("drifty", {"instances": rows[start:start + per_request].tolist()})


def text(response) -> str:
    return response.content.decode()


# --- the reference profile ---------------------------------------------------------------


def test_it_records_a_reference_profile_per_feature_without_raw_data(drift_demo):
    version = train()
    profile = ReferenceProfile.objects.get(version=version)
    assert profile.rows == 1000
    assert [f["name"] for f in profile.features] == FEATURES
    income = profile.features[1]
    assert income["count"] == 1000 and abs(income["mean"] - 50) < 2 and abs(income["std"] - 15) < 2
    assert len(income["cuts"]) == 9 and abs(sum(income["shares"]) - 1) < 1e-9
    assert all(0.09 <= share <= 0.11 for share in income["shares"])
    assert len(income["quantiles"]) == 100 and income["quantiles"] == sorted(income["quantiles"])
    assert profile.predictions["kind"] == "classes" and [c[0] for c in profile.predictions["classes"]] == ["0", "1"]
    # no raw data: a few hundred numbers per feature, whatever the number of rows
    assert len(json.dumps(profile.features)) < 3 * 2500


def test_a_register_without_reference_records_no_profile(drift_demo):
    version = train(with_reference=False)
    assert version.version == 1 and not ReferenceProfile.objects.exists()


@pytest.mark.parametrize("bad, message", [
    ("ragged", "reference rows are ragged: row 0 has 3 features, row 20 has 2"),
    ("text", "reference row 12, feature 'f1': 'high' is not a number"),
    ("empty", "reference is empty; at least 10 training rows are needed"),
    ("short", "reference has 3 rows; at least 10"),
    ("wide", "reference has 1001 features; at most 1000"),
    ("nan", "reference row 11, feature 'f1' is nan"),
    ("flat", "reference must be a table, one row of features per training instance (got a 1-D array)"),
    ("narrow", "reference has 2 features; the model expects 3"),
    ("names", "feature name 'age' is used twice"),
    ("orphan", "reference_predictions= and feature_names= describe a reference: pass reference=X_train too"),
])
def test_a_bad_reference_fails_the_step_with_a_clear_message_and_registers_nothing(drift_demo, bad, message):
    files_before = model_files()
    run = engine.run_inline(*engine.start_run("t_drift_demo", {"bad": bad}))
    assert run.status == "failed" and message in run.step_runs.get().error
    assert not ModelVersion.objects.exists() and not ReferenceProfile.objects.exists()
    assert model_files() == files_before  # refused before the file was written


def test_the_demo_pipeline_records_its_training_inputs(db):
    run = engine.run_inline(*engine.start_run("train_classifier", {"n_estimators": 3}))
    assert run.status == "succeeded"
    profile = ReferenceProfile.objects.get(version__model__name="iris-rf", version__run=run)
    assert [f["name"] for f in profile.features][:2] == ["sepal length (cm)", "sepal width (cm)"]
    assert profile.rows == 112 and profile.predictions["kind"] == "classes"


# --- drift reports -----------------------------------------------------------------------


def test_unchanged_inputs_are_stable_on_every_feature(live, operator_client):
    send(inputs(500, seed=2))
    assert drift.compute_all() == 1
    report = DriftReport.objects.get(version=live)
    assert report.rows == 500 and [f["name"] for f in report.features] == FEATURES
    assert all(f["psi"] < 0.1 for f in report.features), [(f["name"], f["psi"]) for f in report.features]
    assert report.max_psi < 0.1 and report.predictions["psi"] < 0.1
    page = text(operator_client.get("/models/drifty/"))
    assert "Input drift" in page and "500</strong> sampled inputs" in page
    table = page.split('id="drift-features"')[1].split("</table>")[0]
    assert table.count("st-succeeded\">stable") == 4 and "drifted" not in table and "feature drifted" not in page


def test_a_feature_moved_by_two_sd_is_drifted_and_the_worst(live, operator_client):
    send(inputs(500, seed=2, shift=("income", 2)))
    monitoring.tick()
    report = DriftReport.objects.get(version=live)
    scores = {f["name"]: f for f in report.features}
    assert scores["income"]["psi"] > 0.25 and scores["income"]["p_value"] < 0.001
    assert scores["age"]["psi"] < 0.1 and scores["<i>score</i>"]["psi"] < 0.1
    assert report.worst_feature == "income" and report.max_psi == scores["income"]["psi"]
    assert report.predictions["psi"] > 0.25  # the tree answers 1 for nearly everyone now

    response = operator_client.get("/models/drifty/")
    page = text(response).split('id="drift"')[1].split("</section>")[0]
    assert "<strong>1 feature drifted</strong>; the worst is <strong>income</strong>" in page
    rows = page.split('id="drift-features"')[1].split("</table>")[0].split("<tr>")[2:]
    assert 'href="#drift-hist-1">income</a>' in rows[0] and "st-failed\">drifted" in rows[0]  # worst first
    charts = page.split('<div id="drift-hist-')[1:]
    assert charts[0].startswith('1">') and charts[0].count("<svg") == 2 and "<rect" in charts[0]
    assert "&lt;i&gt;score&lt;/i&gt;" in page and "<i>score</i>" not in page
    assert 'id="drift-predictions"' in page


@pytest.mark.parametrize("shift, alerted", [(None, False), (("income", 2), True)])
def test_a_drift_rule_alerts_on_a_moved_feature_and_stays_quiet_on_unchanged_inputs(live, shift, alerted):
    """The whole loop: predictions → the monitoring job's report → the alert rule's incident
    and its message to the rule's channel."""
    rule = AlertRule.objects.create(name="drift", condition=Condition.MODEL_DRIFT, model_name="drifty", threshold=0.25)
    rule.channels.add(AlertChannel.objects.create(name="ops mail", kind="email", target="ops@example.com"))
    send(inputs(500, seed=3, shift=shift))
    monitoring.tick()
    alerts.evaluate()
    incidents = list(Incident.objects.filter(rule=rule))
    if not alerted:
        assert incidents == [] and not Delivery.objects.exists()
        return
    [incident] = incidents
    assert incident.subject == "model drifty" and incident.is_open
    assert "income" in incident.summary and incident.link == "/models/drifty/"
    assert Delivery.objects.get(incident=incident).event == "opened"


def test_too_few_sampled_inputs_give_a_report_without_scores(live, operator_client, settings):
    settings.DRIFT_MIN_ROWS = 50
    send(inputs(20, seed=2))
    drift.compute_all()
    report = DriftReport.objects.get(version=live)
    assert (report.rows, report.max_psi, report.features, report.worst_feature) == (20, None, [], "")
    page = text(operator_client.get("/models/drifty/"))
    assert "Too few inputs to compare" in page and "<strong>20</strong> sampled inputs" in page
    assert "at least 50 are needed" in page


def test_only_the_sampled_inputs_of_the_window_count(live, settings):
    send(inputs(300, seed=2))
    Prediction.objects.update(at=timezone.now() - datetime.timedelta(hours=30))
    send(inputs(150, seed=3))
    settings.PREDICTION_SAMPLE_RATE = 0.0
    send(inputs(200, seed=4))
    drift.compute_all()
    assert DriftReport.objects.get(version=live).rows == 150


def test_a_version_on_trial_gets_its_own_report(live, operator, operator_client):
    candidate = train()
    trials.start(RegisteredModel.objects.get(name="drifty"), candidate, "shadow", 0, operator, "try v2")
    rows = inputs(200, seed=5, shift=("age", 3)).tolist()
    state = serving.read_live("drifty")
    for start in range(0, 200, 100):  # what the shadow thread does with a sampled live request
        serving.shadow.run("drifty", state, rows[start:start + 100], [0] * 100, str(uuid.uuid4()), "", True)
    assert Prediction.objects.filter(role=Role.SHADOW, version=candidate, sampled=True).count() == 2
    assert drift.compute_all() == 2
    assert DriftReport.objects.get(version=candidate).worst_feature == "age"
    page = text(operator_client.get("/models/drifty/"))
    assert "v2 (shadow):" in page and "worst feature <strong>age</strong>" in page


def test_reports_are_kept_as_history_recomputed_when_due_and_pruned_when_old(live, settings):
    settings.DRIFT_EVERY_MINUTES = 15
    send(inputs(200, seed=2))
    now = timezone.now()
    assert drift.compute_all(now) == 1
    assert drift.compute_all(now + datetime.timedelta(minutes=5)) == 0  # the latest is fresh
    assert drift.compute_all(now + datetime.timedelta(minutes=16)) == 1
    assert DriftReport.objects.filter(version=live).count() == 2
    later = now + datetime.timedelta(days=settings.DRIFT_REPORT_DAYS, hours=1)
    assert drift.compute_all(later) == 1
    assert list(DriftReport.objects.values_list("computed_at", "rows")) == [(later, 0)]


# --- the card without a reference --------------------------------------------------------


def test_a_live_version_without_reference_says_how_to_record_one(model_demo, operator, operator_client):
    deployments.deploy(train_version(), operator, "first")
    assert drift.compute_all() == 0
    page = text(operator_client.get("/models/demo/"))
    assert "v1 has no reference profile" in page and "reference=X_train" in page


def test_the_card_is_hidden_while_nothing_is_live(drift_demo, operator_client):
    train()
    assert 'id="drift"' not in text(operator_client.get("/models/drifty/"))


def test_a_version_whose_drift_cannot_be_computed_fails_the_job_naming_it(live):
    """The dashboard then shows the monitoring job failing, with this message."""
    send(inputs(200, seed=4))
    ReferenceProfile.objects.filter(version=live).update(features=[{"name": n} for n in FEATURES])  # no bins
    with pytest.raises(drift.DriftFailed, match=r"no drift report for drifty v1 \("):
        drift.compute_all()
    assert not DriftReport.objects.filter(version=live).exists()
