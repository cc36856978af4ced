"""The alert pages: channels and rules set up from the dashboard with clear errors, a test
message that says at once whether it went, incidents listed and acknowledged; all audited."""

import pytest
from django.core import mail

from app.models import AlertChannel, AlertRule, AuditAction, AuditEvent, Delivery, Incident
from app.ops import alerts
from app.runs import engine

pytestmark = pytest.mark.django_db


def test_an_operator_adds_an_email_channel_sends_a_test_and_adds_a_rule(operator_client):
    response = operator_client.post("/alerts/channels/new/", {"name": "ops", "kind": "email",
                                                              "target": " ops@example.com ,oncall@example.com", "enabled": "on"})
    assert response.status_code == 302
    channel = AlertChannel.objects.get()
    assert channel.target == "ops@example.com, oncall@example.com"

    tested = operator_client.post(f"/alerts/channels/{channel.pk}/test/", follow=True).content.decode()
    assert "A test message went to “ops”." in tested
    assert mail.outbox[0].subject == "[mlops] test alert" and mail.outbox[0].to == ["ops@example.com", "oncall@example.com"]

    response = operator_client.post("/alerts/rules/new/", {"name": "failures", "condition": "run_failed", "pipeline_name": "",
                                                           "minutes": "10", "remind_hours": "24", "channels": [channel.pk],
                                                           "enabled": "on"})
    assert response.status_code == 302
    page = operator_client.get("/alerts/").content.decode()
    assert "failures" in page and "a pipeline&#x27;s latest run failed" in page and "every pipeline" in page
    assert [e.details["change"] for e in AuditEvent.objects.filter(action__in=[AuditAction.ALERT_CHANNEL, AuditAction.ALERT_RULE])] == [
        "created", "created",
    ]


@pytest.mark.parametrize("kind, target, error", [
    ("email", "not-an-address", "“not-an-address” is not an email address."),
    ("email", " , ", "Give at least one email address."),
    ("apprise", "nonsense://x", "Not a URL Apprise knows"),
    ("carrier-pigeon", "x", "Select a valid choice."),
])
def test_a_bad_channel_is_refused_naming_what_is_wrong(operator_client, kind, target, error):
    response = operator_client.post("/alerts/channels/new/", {"name": "c", "kind": kind, "target": target})
    assert response.status_code == 422 and error in response.content.decode()
    assert not AlertChannel.objects.exists() and not AuditEvent.objects.exists()


def test_a_rule_needs_a_channel_and_a_known_pipeline(operator_client):
    response = operator_client.post("/alerts/rules/new/", {"name": "r", "condition": "run_failed", "pipeline_name": "nope",
                                                           "minutes": "-1", "remind_hours": "1"})
    page = response.content.decode()
    assert response.status_code == 422
    assert "Pick at least one channel to tell (add one first)." in page
    assert "Select a valid choice. nope is not one of the available choices." in page
    assert "Ensure this value is greater than or equal to 0." in page
    assert not AlertRule.objects.exists()


def test_a_test_message_that_cannot_be_sent_says_why(operator_client):
    channel = AlertChannel.objects.create(name="hook", kind="apprise", target="json://127.0.0.1:1/x?cto=1")
    page = operator_client.post(f"/alerts/channels/{channel.pk}/test/", follow=True).content.decode()
    assert "The test message to “hook” was not sent: the target did not take it" in page
    assert Delivery.objects.get().state == Delivery.State.FAILED


def test_an_incident_is_listed_on_home_and_acknowledged_once(operator_client, define):
    pipe = define("t_boom")
    pipe.step(name="boom")(lambda ctx: 1 / 0)
    rule = AlertRule.objects.create(name="boom", condition="run_failed", pipeline_name="t_boom")
    rule.channels.add(AlertChannel.objects.create(name="ops", kind="email", target="ops@example.com"))
    engine.run_inline(*engine.start_run("t_boom"))
    (incident,) = alerts.evaluate()

    home = operator_client.get("/dashboard/").content.decode()
    assert "Open incidents" in home and incident.summary in home
    page = operator_client.get(f"/incidents/{incident.pk}/").content.decode()
    assert "boom: ZeroDivisionError: division by zero" in page and "Acknowledge" in page and "ops" in page

    operator_client.post(f"/incidents/{incident.pk}/ack/")
    again = operator_client.post(f"/incidents/{incident.pk}/ack/", follow=True).content.decode()

    assert "It was acknowledged already, or it is closed." in again
    incident.refresh_from_db()
    assert incident.acknowledged_at and AuditEvent.objects.filter(action=AuditAction.INCIDENT_ACK).count() == 1
    assert incident.summary in operator_client.get("/incidents/?state=open").content.decode()
    assert incident.summary not in operator_client.get("/incidents/?state=closed").content.decode()
    assert Incident.objects.count() == 1


def test_a_channels_secret_is_not_shown(operator_client):
    AlertChannel.objects.create(name="slack", kind="apprise", target="slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ")
    page = operator_client.get("/alerts/").content.decode()
    assert "TIiajkdnlazkcOXrIdevi7FQ" not in page and "slack://T1JJ3T3L2/…" in page


def test_turning_a_rule_off_closes_its_open_incidents_and_says_so(operator_client):
    from django.utils import timezone

    channel = AlertChannel.objects.create(name="ops", kind="email", target="ops@example.com")
    rule = AlertRule.objects.create(name="failures", condition="run_failed")
    rule.channels.add(channel)
    incident = Incident.objects.create(rule=rule, subject="pipeline x", summary="x: run #1 failed", opened_at=timezone.now())
    assert "Off: nothing is watched" in operator_client.get(f"/alerts/rules/{rule.pk}/edit/").content.decode()

    response = operator_client.post(f"/alerts/rules/{rule.pk}/edit/", {
        "name": "failures", "condition": "run_failed", "pipeline_name": "", "minutes": "10", "remind_hours": "0",
        "channels": [channel.pk],  # "enabled" not sent: the box is unticked
    }, follow=True)
    page = response.content.decode()
    assert "its 1 open incident(s) are closed, without a recovery message" in page
    assert "off: not watching" in page
    incident.refresh_from_db()
    assert incident.closed_at is not None and not Delivery.objects.exists()  # nobody told of a recovery that did not happen
    assert AuditEvent.objects.filter(action=AuditAction.ALERT_RULE).last().details["closed_incidents"] == 1
    shown = operator_client.get(f"/incidents/{incident.pk}/").content.decode()
    assert "rule turned off" in shown and ">recovered<" not in shown  # it did not recover: nobody is told it did
    assert "rule turned off" in operator_client.get("/incidents/?state=closed").content.decode()
