"""The audit trail page and its admin."""

import datetime

import pytest
from django.utils import timezone

from app import audit, engine
from app.models import AuditAction, AuditEvent
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def events(operator, admin):
    run, _ready = engine.start_run("fanout_demo", {"rows": "5"})
    other, _ready = engine.start_run("flaky_demo", {})
    return [
        audit.record(operator, AuditAction.TRIGGER, run, details={"params": {"rows": 5, "note": "<script>x</script>"}}),
        audit.record(admin, AuditAction.CANCEL, other),
        audit.record(operator, AuditAction.PARAMSET_EDIT, pipeline_name="flaky_demo",
                     details={"diff": {"changed": {"fail": [True, False]}, "added": {}, "removed": {}}}),
    ]


def rows(response):
    return response.content.decode().count("<tr>") - 1  # minus the header row


def test_it_lists_events_newest_first_with_who_what_and_target(operator_client, events):
    response = operator_client.get("/audit/")

    page = response.content.decode().split("<tbody>")[1]  # the table, not the filter's options
    assert response.status_code == 200 and rows(response) == 3
    assert page.index("edited a parameter set") < page.index("cancelled a run") < page.index("started a run")
    assert f'<a href="/runs/{events[0].target_id}/">Run #{events[0].target_id} of fanout_demo</a>' in page
    assert "<code>fail</code>: True → False" in page


@pytest.mark.parametrize("query,count", [
    ("user=olivia", 2), ("user=ada", 1), ("action=cancel", 1), ("pipeline=flaky_demo", 2),
    ("user=olivia&pipeline=flaky_demo", 1), ("action=trigger&pipeline=flaky_demo", 0),
])
def test_it_filters_events(operator_client, events, query, count):
    assert rows(operator_client.get(f"/audit/?{query}")) == max(count, 1)  # an empty list shows one "no events" row
    assert ("No events match these filters" in operator_client.get(f"/audit/?{query}").content.decode()) == (count == 0)


def test_it_filters_by_date(operator_client, events):
    AuditEvent.objects.filter(pk=events[0].pk).update(at=timezone.now() - datetime.timedelta(days=3))
    today = timezone.now().date().isoformat()

    assert rows(operator_client.get(f"/audit/?since={today}")) == 2


def test_it_ignores_a_bad_filter_value_with_a_message(operator_client, events):
    response = operator_client.get("/audit/?action=explode&since=yesterday&user=olivia")

    page = response.content.decode()
    assert response.status_code == 200
    assert "Select a valid choice. explode is not one of the available choices." in page
    assert "Enter a valid date." in page
    assert rows(response) == 2  # the valid user filter still applies


def test_it_pages_by_50(operator_client, operator):
    for i in range(55):
        audit.record(operator, AuditAction.RERUN, pipeline_name=f"p{i}")

    first, second = operator_client.get("/audit/"), operator_client.get("/audit/?page=2")

    assert (rows(first), rows(second)) == (50, 5)
    assert "Page 1 of 2 · 55 events" in first.content.decode()


def test_it_escapes_what_users_typed(operator_client, events):
    page = operator_client.get("/audit/").content.decode()

    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page


def test_it_sends_anonymous_visitors_to_log_in(client):
    response = client.get("/audit/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_it_forbids_stakeholders(stakeholder_client, events):
    assert stakeholder_client.get("/audit/").status_code == 403


def test_it_refuses_post(operator_client):
    assert operator_client.post("/audit/").status_code == 405


def test_it_shows_the_audit_link_to_operators_only(operator_client, db):
    assert 'href="/audit/"' in operator_client.get("/pipelines/").content.decode()
    operator_client.force_login(make_user("sandy", "stakeholders"))
    assert 'href="/audit/"' not in operator_client.get("/pipelines/").content.decode()


def test_it_lets_an_admin_read_but_not_change_the_trail(client, admin, events):
    client.force_login(admin)
    event = events[0]

    assert client.get("/admin/app/auditevent/").status_code == 200
    assert client.post(f"/admin/app/auditevent/{event.pk}/change/", {"action": "deploy"}).status_code == 403
    assert client.post(f"/admin/app/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get("/admin/app/auditevent/add/").status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).action == "trigger"
