"""The audit trail page (/audit/) and the audit trail in the admin."""

import datetime
import re

import pytest
from django.utils import timezone

from app.models import AuditAction, AuditEvent, Run
from app.runs import audit, engine, paramsets

pytestmark = pytest.mark.django_db


@pytest.fixture
def events(operator, admin):
    """Three events by two users on two pipelines, oldest first."""
    run, _ready = engine.start_run("fanout_demo", {"rows": "5"})
    other, _ready = engine.start_run("flaky_demo", {})
    return [
        audit.record(operator, AuditAction.TRIGGER, run, details={"params": {"rows": 5, "note": "<script>x</script>"}}),
        audit.record(admin, AuditAction.CANCEL, other),
        audit.record(operator, AuditAction.PARAMSET_EDIT, pipeline_name="flaky_demo",
                     details={"revision": 2, "diff": {"changed": {"fail": [True, False]}, "added": {"seed": 3},
                                                      "removed": {"colour": "<b>red</b>"}}}),
    ]


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    return client


def text(response):
    return response.content.decode()


def table(response):
    """The events table only (the filter's options name actions and users too)."""
    return text(response).split("<tbody>")[1].split("</tbody>")[0]


def row_count(response):
    return table(response).count("<tr>") - ("No events" in table(response))


# --- the list -------------------------------------------------------------------------------

def test_it_lists_events_newest_first(operator_client, events):
    response = operator_client.get("/audit/")

    page = table(response)
    assert response.status_code == 200 and row_count(response) == 3
    assert page.index("edited a parameter set") < page.index("cancelled a run") < page.index("started a run")


def test_it_shows_who_what_and_the_linked_target(operator_client, events):
    response = operator_client.get("/audit/")

    row = table(response).split("<tr>")[-1]  # the oldest event: olivia started a run
    assert "<td>olivia</td>" in row and "<td>started a run</td>" in row
    assert f'<a href="/runs/{events[0].target_id}/">Run #{events[0].target_id} of fanout_demo</a>' in row
    assert "<td>fanout_demo</td>" in row


def test_it_shows_the_time_with_how_long_ago(operator_client, events):
    response = operator_client.get("/audit/")

    when = timezone.localtime(events[0].at).strftime("%Y-%m-%d %H:%M:%S")
    utc = events[0].at.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert re.search(rf'<time datetime="[^"]+" title="{utc} UTC · (just now|\d+ s ago)">{when}</time>', table(response))


def test_it_shows_a_label_when_the_target_has_no_page(operator_client, operator):
    audit.record(operator, AuditAction.DEPLOY, pipeline_name="fanout_demo")
    AuditEvent.objects.update(target_label="model v3")

    response = operator_client.get("/audit/")

    assert "<td>model v3</td>" in table(response)


def test_it_renders_a_parameter_diff_as_old_to_new(operator_client, events):
    response = operator_client.get("/audit/")

    page = table(response)
    assert "<code>fail</code> <del>true</del> → <ins>false</ins>" in page
    assert "<code>seed</code> added: <ins>3</ins>" in page
    assert "<code>colour</code> removed (was <del>&quot;&lt;b&gt;red&lt;/b&gt;&quot;</del>)" in page


def test_it_renders_params_as_name_value_pairs(operator_client, events):
    response = operator_client.get("/audit/")

    assert "<li><code>rows=5</code></li>" in table(response)


def test_it_renders_other_details_as_compact_json(operator_client, operator):
    audit.record(operator, AuditAction.DEPLOY, pipeline_name="p", details={
        "stage": {"from": "staging", "to": "<prod>"}, "rerun_steps": ["fit", "report"], "retry_of": 7,
    })

    response = operator_client.get("/audit/")

    page = table(response)
    assert "stage:</span>\n  {&quot;from&quot;: &quot;staging&quot;, &quot;to&quot;: &quot;&lt;prod&gt;&quot;}" in page
    assert "rerun steps:</span>\n  fit, report" in page
    assert '<a href="/runs/7/">run #7</a>' in page


def test_it_escapes_what_users_typed(operator_client, events):
    response = operator_client.get("/audit/")

    page = text(response)
    assert "<script>x</script>" not in page
    assert "note=&quot;&lt;script&gt;x&lt;/script&gt;&quot;" in page
    assert "<b>red</b>" not in page


def test_it_shows_an_empty_trail(operator_client):
    response = operator_client.get("/audit/")

    assert response.status_code == 200 and "<td colspan=\"6\" class=\"muted\">No events.</td>" in text(response)


# --- filters ----------------------------------------------------------------------------------

@pytest.mark.parametrize("query, expected", [
    ("user=olivia", ["edited a parameter set", "started a run"]),
    ("user=ada", ["cancelled a run"]),
    ("action=cancel", ["cancelled a run"]),
    ("action=paramset_edit", ["edited a parameter set"]),
    ("pipeline=fanout_demo", ["started a run"]),
    ("pipeline=flaky_demo", ["edited a parameter set", "cancelled a run"]),
])
def test_it_filters_events(operator_client, events, query, expected):
    response = operator_client.get(f"/audit/?{query}")

    page = table(response)
    assert response.status_code == 200 and row_count(response) == len(expected)
    assert all(label in page for label in expected)


@pytest.mark.parametrize("query, count", [
    ("user=olivia&pipeline=flaky_demo", 1),
    ("user=olivia&action=trigger&pipeline=fanout_demo", 1),
    ("user=ada&pipeline=fanout_demo", 0),
])
def test_it_combines_filters(operator_client, events, query, count):
    response = operator_client.get(f"/audit/?{query}")

    assert row_count(response) == count
    assert ("No events match these filters." in text(response)) == (count == 0)


def test_it_offers_only_users_and_pipelines_that_have_events(operator_client, events, stakeholder):
    response = operator_client.get("/audit/")

    page = text(response)
    assert '<option value="olivia">olivia</option>' in page and '<option value="ada">ada</option>' in page
    assert 'value="sam"' not in page
    assert '<option value="flaky_demo">flaky_demo</option>' in page and 'value="train_classifier"' not in page


@pytest.fixture
def dated_events(operator):
    """One event on each of 1, 2 and 3 June 2025 at noon."""
    for day in (1, 2, 3):
        event = audit.record(operator, AuditAction.RERUN, pipeline_name=f"june{day}")
        noon = timezone.make_aware(datetime.datetime(2025, 6, day, 12))
        AuditEvent.objects.filter(pk=event.pk).update(at=noon)


@pytest.mark.parametrize("query, pipelines", [
    ("since=2025-06-02", ["june2", "june3"]),
    ("until=2025-06-02", ["june1", "june2"]),
    ("since=2025-06-02&until=2025-06-02", ["june2"]),
    ("since=2025-06-04", []),
])
def test_it_filters_by_date_with_both_ends_included(operator_client, dated_events, query, pipelines):
    response = operator_client.get(f"/audit/?{query}")

    assert re.findall(r"<td>(june\d)</td>", table(response)) == sorted(pipelines, reverse=True)


def test_it_ignores_bad_filter_values_with_a_message(operator_client, events):
    response = operator_client.get("/audit/?action=explode&since=yesterday&user=olivia")

    page = text(response)
    assert response.status_code == 200
    assert "These filters were ignored:" in page
    assert '<li id="id_action_error">Action: Select a valid choice. explode is not one of the available choices.</li>' in page
    assert '<li id="id_since_error">From: Enter a valid date.</li>' in page
    assert row_count(response) == 2  # the valid user filter still applies


@pytest.mark.parametrize("query", [
    "user=nobody", "pipeline=%3Cscript%3E", "since=0001-01-01", "until=9999-12-31", "since=2025-13-45",
    "page=last", "page=-3", "page=999",
])
def test_it_never_fails_on_odd_filter_values(operator_client, events, query):
    response = operator_client.get(f"/audit/?{query}")

    assert response.status_code == 200
    assert "<script>" not in text(response).split("</head>")[1]


def test_it_ignores_an_end_date_before_the_start_date(operator_client, events):
    today = timezone.localdate()

    response = operator_client.get(f"/audit/?since={today}&until={today - datetime.timedelta(days=1)}")

    assert '<li id="id_until_error">To: “To” is before “From”.</li>' in text(response)
    assert row_count(response) == 3  # the start date still applies


# --- pagination -------------------------------------------------------------------------------

@pytest.fixture
def many_events(operator):
    for i in range(55):
        audit.record(operator, AuditAction.RERUN, pipeline_name=f"p{i:02}")


def test_it_shows_50_events_on_the_first_page(operator_client, many_events):
    response = operator_client.get("/audit/")

    assert row_count(response) == 50
    assert "Page 1 of 2 · 55 events" in text(response)
    assert '<a href="?page=2">Older →</a>' in text(response)


def test_it_shows_the_rest_on_the_second_page(operator_client, many_events):
    response = operator_client.get("/audit/?page=2")

    assert re.findall(r"<td>(p\d\d)</td>", table(response)) == ["p04", "p03", "p02", "p01", "p00"]


def test_it_keeps_the_filters_in_the_page_links(operator_client, many_events):
    response = operator_client.get("/audit/?user=olivia&action=rerun")

    assert '<a href="?user=olivia&amp;action=rerun&amp;page=2">Older →</a>' in text(response)


# --- access -----------------------------------------------------------------------------------

def test_it_sends_anonymous_visitors_to_log_in(client):
    response = client.get("/audit/")

    assert (response.status_code, response["Location"]) == (302, "/login/?next=/audit/")


def test_it_forbids_stakeholders(stakeholder_client, events):
    response = stakeholder_client.get("/audit/")

    assert response.status_code == 403


def test_it_lets_an_admin_read_the_page(admin_client, events):
    response = admin_client.get("/audit/")

    assert response.status_code == 200 and row_count(response) == 3


def test_it_refuses_post(operator_client, events):
    response = operator_client.post("/audit/")

    assert response.status_code == 405 and AuditEvent.objects.count() == 3


def test_it_shows_the_audit_link_to_operators(operator_client):
    response = operator_client.get("/pipelines/")

    assert '<a href="/audit/" >Audit</a>' in text(response)


def test_it_hides_the_audit_link_from_stakeholders(stakeholder_client):
    response = stakeholder_client.get("/pipelines/")

    assert 'href="/audit/"' not in text(response)


# --- admin ------------------------------------------------------------------------------------

def test_it_lists_the_trail_in_the_admin(admin_client, events):
    response = admin_client.get("/admin/app/auditevent/")

    assert response.status_code == 200
    assert f'<a href="/runs/{events[0].target_id}/">Run #{events[0].target_id} of fanout_demo</a>' in text(response)
    assert "Add audit event" not in text(response) and "Delete selected" not in text(response)


def test_it_shows_an_event_read_only_in_the_admin(admin_client, events):
    response = admin_client.get(f"/admin/app/auditevent/{events[2].pk}/change/")

    page = text(response)
    assert response.status_code == 200
    assert "<pre>{\n  &quot;revision&quot;: 2,\n  &quot;diff&quot;: {" in page  # the details as indented JSON
    assert "&quot;colour&quot;: &quot;&lt;b&gt;red&lt;/b&gt;&quot;" in page
    assert 'name="action"' not in page and "Save" not in page


def test_it_refuses_to_add_an_event_in_the_admin(admin_client, events):
    response = admin_client.post("/admin/app/auditevent/add/", {"action": "deploy", "username": "mallory"})

    assert response.status_code == 403 and AuditEvent.objects.count() == 3


def test_it_refuses_to_change_an_event_in_the_admin(admin_client, events):
    response = admin_client.post(f"/admin/app/auditevent/{events[0].pk}/change/", {"action": "deploy"})

    assert response.status_code == 403 and AuditEvent.objects.get(pk=events[0].pk).action == "trigger"


def test_it_refuses_to_delete_an_event_in_the_admin(admin_client, events):
    response = admin_client.post(f"/admin/app/auditevent/{events[0].pk}/delete/", {"post": "yes"})

    assert response.status_code == 403 and AuditEvent.objects.count() == 3


def test_it_refuses_a_bulk_delete_of_events_in_the_admin(admin_client, events):
    response = admin_client.post(
        "/admin/app/auditevent/", {"action": "delete_selected", "_selected_action": [e.pk for e in events], "post": "yes"}
    )

    assert response.status_code in (200, 302) and AuditEvent.objects.count() == 3


def test_it_links_a_revision_to_its_runs_in_the_admin(admin_client, operator):
    pset = paramsets.create("fanout_demo", "small", {"rows": 5, "seed": 7, "pause": 0.0}, operator)
    engine.start_run("fanout_demo", {"rows": "5"})
    Run.objects.update(parameter_revision=pset.latest)

    response = admin_client.get(f"/admin/app/parametersetrevision/{pset.latest.pk}/change/")

    assert f'<a href="/admin/app/run/?parameter_revision__id__exact={pset.latest.pk}">1 run</a>' in text(response)


def test_it_lists_the_runs_of_a_revision_in_the_admin(admin_client, operator):
    pset = paramsets.create("fanout_demo", "small", {"rows": 5, "seed": 7, "pause": 0.0}, operator)
    run, _ready = engine.start_run("fanout_demo", {"rows": "5"})
    engine.start_run("fanout_demo", {"rows": "6"})
    Run.objects.filter(pk=run.pk).update(parameter_revision=pset.latest)

    response = admin_client.get(f"/admin/app/run/?parameter_revision__id__exact={pset.latest.pk}")

    assert response.status_code == 200 and "1 run" in text(response) and "2 runs" not in text(response)
