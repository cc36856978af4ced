"""Model alerts: a live model's error rate, p95 latency, input drift and silence each open one
incident per model through the alert channels, remind as the rule says and recover.

The boundary the conditions read is the prediction log (Prediction rows with chosen
statuses, latencies and times) and the drift reports (DriftReport rows, as the monitoring job
writes them); the model is trained and deployed for real. Rules are set up through the real
alert rule page."""

import datetime
import uuid

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from app.models import AlertChannel, AlertRule, Delivery, DriftReport, Incident, Prediction, RegisteredModel
from app.mlmodels import deployments
from app.ops import alerts
from tests.conftest import train_version

pytestmark = pytest.mark.django_db

MIN = datetime.timedelta(minutes=1)


@pytest.fixture
def fraud(model_demo, operator):
    """The model "fraud", v1 live; the moment it went live."""
    version = train_version(model="fraud")
    deployment = deployments.deploy(version, operator, "first")
    return deployment


def rule(condition, threshold=None, minutes=10, model="fraud", remind_hours=24):
    made = AlertRule.objects.create(name=f"r-{condition}", condition=condition, model_name=model,
                                    threshold=threshold, minutes=minutes, remind_hours=remind_hours)
    made.channels.add(AlertChannel.objects.get_or_create(name="ops mail", kind="email", target="ops@example.com")[0])
    return made


def log(at, n, status=200, latency=10.0, role="live", error="", model="fraud"):
    """`n` requests answered at `at` (a second apart, before it)."""
    registered = RegisteredModel.objects.select_related("live").get(name=model)
    Prediction.objects.bulk_create([
        Prediction(uid=uuid.uuid4(), model=registered, version_id=registered.live.version_id, role=role,
                   at=at - datetime.timedelta(seconds=i), latency_ms=latency, status=status, error=error)
        for i in range(n)
    ])


def events():
    return list(Delivery.objects.order_by("id").values_list("event", flat=True))


# --- error rate ---------------------------------------------------------------------------


def test_it_opens_one_incident_for_a_failing_model_tells_once_and_recovers(fraud):
    rule("model_errors", threshold=5)
    now = timezone.now()
    log(now - 2 * MIN, 32)
    log(now - 3 * MIN, 8, status=500, error="ValueError: could not convert string to float: 'x'")

    alerts.evaluate(now=now)
    alerts.evaluate(now=now + MIN)  # still failing: the same incident, no second message

    incident = Incident.objects.get()
    assert incident.is_open and incident.subject == "model fraud"
    assert incident.summary == "model fraud: 20.0 % of 40 requests failed in the last 10 min (above 5 %)"
    assert incident.detail == ("8 answered with an error (8 × 5xx, 0 × 4xx); judged on at least 20 requests; "
                               "the last: 500 ValueError: could not convert string to float: 'x'")
    assert incident.link == "/models/fraud/"
    delivery = Delivery.objects.get()
    assert (delivery.event, delivery.channel.name, delivery.state) == ("opened", "ops mail", "pending")

    assert alerts.deliver(now=now + MIN) == 1
    (email,) = mail.outbox
    assert email.subject == "[mlops] alert: model fraud: 20.0 % of 40 requests failed in the last 10 min (above 5 %)"
    assert "Details: 8 answered with an error" in email.body and "/models/fraud/" in email.body

    # Ten minutes later the bad requests are out of the window and the new ones are fine.
    later = now + 12 * MIN
    log(later - MIN, 25)
    alerts.evaluate(now=later)
    incident.refresh_from_db()
    assert incident.closed_because == "recovered" and events() == ["opened", "recovered"]


def test_it_counts_4xx_as_errors_and_only_answers_clients_got(fraud):
    rule("model_errors", threshold=10)
    now = timezone.now()
    log(now - MIN, 20)
    log(now - MIN, 5, status=422, role="canary", error="instances: expected 2 features, got 3")
    log(now - MIN, 50, status=500, role="shadow")  # never answered to a client

    alerts.evaluate(now=now)

    incident = Incident.objects.get()
    assert incident.summary == "model fraud: 20.0 % of 25 requests failed in the last 10 min (above 10 %)"
    assert "(0 × 5xx, 5 × 4xx)" in incident.detail and "422 instances: expected 2 features" in incident.detail


def test_too_few_requests_open_nothing_and_keep_an_open_incident_open(fraud):
    rule("model_errors", threshold=5)
    now = timezone.now()
    log(now - MIN, 1)
    log(now - MIN, 1, status=500)  # one bad request of two is not an incident
    alerts.evaluate(now=now)
    assert not Incident.objects.exists()

    log(now + 5 * MIN, 30, status=503)
    alerts.evaluate(now=now + 5 * MIN)
    incident = Incident.objects.get()
    summary = incident.summary

    # Quiet: three requests in the window are too few to say it is well again.
    quiet = now + 20 * MIN
    log(quiet - MIN, 3)
    alerts.evaluate(now=quiet)
    incident.refresh_from_db()
    assert incident.is_open and incident.summary == summary
    assert incident.detail == ("Now 3 request(s) in the last 10 min: too few to judge (at least 20); it stays open "
                               "until enough show the error rate at or below 5 %.")

    log(quiet + MIN, 20)
    alerts.evaluate(now=quiet + MIN)
    incident.refresh_from_db()
    assert incident.closed_because == "recovered" and events() == ["opened", "recovered"]


def test_reminders_follow_the_rule_and_stop_when_acknowledged(fraud, operator):
    rule("model_errors", threshold=5, remind_hours=1)
    now = timezone.now()
    for minutes in (0, 30, 61):
        at = now + minutes * MIN
        log(at, 20, status=500)
        alerts.evaluate(now=at)
    assert events() == ["opened", "reminder"]

    alerts.acknowledge(Incident.objects.get(), operator)
    at = now + 125 * MIN
    log(at, 20, status=500)
    alerts.evaluate(now=at)
    assert events() == ["opened", "reminder"]


def test_a_rule_for_every_live_model_opens_one_incident_per_model(fraud, operator):
    deployments.deploy(train_version(model="churn"), operator, "first")
    rule("model_errors", threshold=5, model="")
    now = timezone.now()
    log(now, 20, status=500)
    log(now, 20, status=500, model="churn")

    alerts.evaluate(now=now)

    assert sorted(Incident.objects.values_list("subject", flat=True)) == ["model churn", "model fraud"]
    assert Delivery.objects.count() == 2


def test_a_model_that_stops_being_live_closes_its_incident_as_recovered(fraud):
    rule("model_errors", threshold=5)
    now = timezone.now()
    log(now, 20, status=500)
    alerts.evaluate(now=now)

    # Nothing in the app takes a model offline yet; the serving side reads `live` alone.
    RegisteredModel.objects.filter(name="fraud").update(live=None)
    alerts.evaluate(now=now + MIN)

    assert Incident.objects.get().closed_because == "recovered" and events() == ["opened", "recovered"]


# --- latency ------------------------------------------------------------------------------


def test_it_alerts_on_the_p95_latency_above_the_threshold_and_not_at_it(fraud):
    now = timezone.now()
    for ms in range(1, 101):  # p95 of 1 … 100 ms is 95 ms
        log(now - MIN, 1, latency=float(ms))
    log(now - MIN, 10, latency=5000.0, role="shadow")
    log(now - 20 * MIN, 10, latency=5000.0)  # before the window
    at_threshold = rule("model_latency", threshold=95)
    alerts.evaluate(now=now)
    assert not Incident.objects.exists()

    at_threshold.delete()
    rule("model_latency", threshold=90)
    alerts.evaluate(now=now)
    incident = Incident.objects.get()
    assert incident.summary == "model fraud: p95 latency 95 ms over the last 10 min (above 90 ms)"
    assert incident.detail.startswith("100 requests (judged on at least 20); v1 live since ")


# --- drift --------------------------------------------------------------------------------


def report(version_id, at, psi, also=0.26, rows=1200):
    """A drift report as the monitoring job writes it: `amount` drifted by `psi`,
    `merchant_risk` by `also`, `age` not at all."""
    features = [
        {"name": "amount", "psi": psi, "ks": 0.31, "p_value": 2e-12, "reference": [0.2, 0.5, 0.3], "recent": [0.1, 0.3, 0.6]},
        {"name": "age", "psi": 0.03, "ks": 0.02, "p_value": 0.81, "reference": [0.3, 0.4, 0.3], "recent": [0.3, 0.4, 0.3]},
        {"name": "merchant_risk", "psi": also, "ks": 0.12, "p_value": 1e-4, "reference": [0.5, 0.5], "recent": [0.4, 0.6]},
    ]
    worst = max(features, key=lambda f: f["psi"])
    return DriftReport.objects.create(version_id=version_id, computed_at=at, window_start=at - datetime.timedelta(hours=24),
                                      rows=rows, features=features, max_psi=worst["psi"], worst_feature=worst["name"])


def test_drift_above_the_threshold_names_the_worst_feature_and_recovers(fraud):
    rule("model_drift", threshold=0.2)
    now = timezone.now()
    report(fraud.version_id, now - 30 * MIN, psi=0.41)

    alerts.evaluate(now=now)

    incident = Incident.objects.get()
    assert incident.summary == "model fraud: input drift on “amount”, PSI 0.41 (above 0.2)"
    assert incident.detail.startswith("amount: PSI 0.41 (KS 0.31, p 2e-12); also above: merchant_risk 0.26; "
                                      "1,200 sampled rows of v1 since ")

    # Too few sampled rows to compare: a report without a PSI judges nothing.
    DriftReport.objects.create(version_id=fraud.version_id, computed_at=now + 15 * MIN, window_start=now - 24 * 60 * MIN,
                               rows=12, features=[], max_psi=None)
    alerts.evaluate(now=now + 16 * MIN)
    assert Incident.objects.get().is_open

    report(fraud.version_id, now + 30 * MIN, psi=0.05, also=0.04)  # the next report: back to normal
    alerts.evaluate(now=now + 31 * MIN)
    incident.refresh_from_db()
    assert incident.closed_because == "recovered"


def test_an_old_report_or_one_of_a_version_no_longer_live_says_nothing(fraud, operator, settings):
    settings.DRIFT_WINDOW_HOURS = 24
    rule("model_drift", threshold=0.2)
    now = timezone.now()
    report(fraud.version_id, now - datetime.timedelta(hours=49), psi=0.9)
    alerts.evaluate(now=now)
    assert not Incident.objects.exists()

    report(fraud.version_id, now - MIN, psi=0.9)
    alerts.evaluate(now=now)
    assert Incident.objects.get().is_open

    deployments.deploy(train_version(model="fraud"), operator, "v2, trained on this month")
    alerts.evaluate(now=now + MIN)
    assert Incident.objects.get().closed_because == "recovered"


# --- silence ------------------------------------------------------------------------------


def test_a_silent_model_opens_an_incident_only_once_live_that_long(fraud):
    rule("model_silent", minutes=360)
    went_live = fraud.deployed_at

    with time_machine.travel(went_live + datetime.timedelta(hours=5), tick=False):
        alerts.evaluate()
    assert not Incident.objects.exists()  # live for 5 h: not silent for 6 h yet

    with time_machine.travel(went_live + datetime.timedelta(hours=7), tick=False):
        alerts.evaluate()
    incident = Incident.objects.get()
    assert incident.summary == "model fraud: no request for 6 h"
    assert incident.detail == f"none since v1 went live at {went_live:%Y-%m-%d %H:%M} UTC"

    log(went_live + datetime.timedelta(hours=7, minutes=5), 1)
    alerts.evaluate(now=went_live + datetime.timedelta(hours=7, minutes=6))
    incident.refresh_from_db()
    assert incident.closed_because == "recovered"

    log(went_live + datetime.timedelta(hours=8), 1, role="shadow")  # not traffic
    alerts.evaluate(now=went_live + datetime.timedelta(hours=13, minutes=10))
    reopened = Incident.objects.get(closed_at__isnull=True)
    assert reopened.detail.startswith("the last request was at ")
    assert events() == ["opened", "recovered", "opened"]


# --- the rule form ------------------------------------------------------------------------


@pytest.fixture
def channel(db):
    RegisteredModel.objects.create(name="fraud")
    return AlertChannel.objects.create(name="ops mail", kind="email", target="ops@example.com")


def post(client, channel, **fields):
    data = {"name": "fraud errors", "condition": "model_errors", "pipeline_name": "", "model_name": "fraud",
            "threshold": "5", "minutes": "10", "remind_hours": "24", "channels": [channel.pk], "enabled": "on"}
    data.update(fields)
    return client.post("/alerts/rules/new/", data)


def test_an_operator_adds_a_model_rule_and_the_list_says_what_it_watches(operator_client, channel):
    response = post(operator_client, channel)

    assert response.status_code == 302
    saved = AlertRule.objects.get()
    assert (saved.condition, saved.model_name, saved.threshold, saved.minutes) == ("model_errors", "fraud", 5.0, 10)
    page = operator_client.get("/alerts/").content.decode()
    assert "error rate of fraud above 5 % for 10 min" in page


def test_no_traffic_takes_hours_and_shows_them_back(operator_client, channel):
    response = post(operator_client, channel, name="fraud silent", condition="model_silent", threshold="", minutes="6h",
                    model_name="")

    assert response.status_code == 302
    saved = AlertRule.objects.get()
    assert (saved.minutes, saved.threshold, saved.model_name) == (360, None, "")
    assert "no request to every live model for 6 h" in operator_client.get("/alerts/").content.decode()
    assert 'value="6h"' in operator_client.get(f"/alerts/rules/{saved.pk}/edit/").content.decode()


@pytest.mark.parametrize("fields, field, error", [
    ({"threshold": ""}, "threshold", "Give the error rate above which it alerts, in % (e.g. 5)."),
    ({"threshold": "150"}, "threshold", "An error rate is a share from 0 to 100 % (it alerts above it), not 150."),
    ({"threshold": "lots"}, "threshold", "The threshold is a number, e.g. 5 (%), 500 (ms) or 0.2 (PSI)."),
    ({"condition": "model_latency", "threshold": "0"}, "threshold", "A p95 latency threshold is a number of ms above 0, not 0."),
    ({"condition": "model_drift", "threshold": "-0.1"}, "threshold", "A PSI threshold is above 0 (e.g. 0.2), not -0.1."),
    ({"condition": "model_silent", "threshold": "3"}, "threshold", "No traffic takes no threshold"),
    ({"condition": "model_silent", "threshold": "", "minutes": "0"}, "minutes", "Give at least 1 minute"),
    ({"minutes": "2d"}, "minutes", "At most 1440 minutes (a day) for the error rate and latency"),
    ({"minutes": "soon"}, "minutes", "Give minutes as a number (90) or with a unit (6h, 1h30, 2d)."),
    ({"model_name": "nope"}, "model_name", "There is no registered model named “nope”."),
    ({"pipeline_name": "flaky_demo"}, "pipeline_name", "A model condition watches models, not pipelines"),
    ({"condition": "run_failed", "threshold": ""}, "model_name", "This condition watches pipelines or workers, not models"),
    ({"condition": "run_failed", "model_name": ""}, "threshold", "Only the model conditions take a threshold: leave it empty."),
])
def test_a_bad_model_rule_is_refused_at_its_field_and_nothing_is_saved(operator_client, channel, fields, field, error):
    response = post(operator_client, channel, **fields)

    assert response.status_code == 422
    form = response.context["form"]
    assert list(form.errors) == [field] and form.errors[field][0].startswith(error)
    assert error in response.content.decode()
    assert not AlertRule.objects.exists()


def test_a_stakeholder_cannot_see_or_add_rules(stakeholder_client, channel):
    assert stakeholder_client.get("/alerts/rules/new/").status_code == 403
    assert post(stakeholder_client, channel).status_code == 403
    assert not AlertRule.objects.exists()
