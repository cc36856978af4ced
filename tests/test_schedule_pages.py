"""The schedule pages: the form checks every field with a message naming what is wrong and
shows the expression in words with its next times; edits, on/off and deletion are audited;
pausing a pipeline shows everywhere and warns whoever starts it by hand."""

import datetime

import pytest
import time_machine

from app.models import AuditAction, AuditEvent, PipelineState, Run, Schedule, ScheduledSlot
from app.ops import scheduler
from app.runs import paramsets

pytestmark = pytest.mark.django_db
UTC = datetime.UTC

GOOD = {"name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Berlin", "parameter_set": "", "slot_param": "",
        "overlap": "skip", "enabled": "on"}


def create(client, **changes):
    return client.post("/pipelines/fanout_demo/schedules/new/", {**GOOD, **changes})


def test_an_operator_creates_a_schedule_and_sees_it_in_words_with_its_next_slots(operator_client):
    with time_machine.travel(datetime.datetime(2026, 12, 2, 12, tzinfo=UTC), tick=False):
        response = create(operator_client)
        schedule = Schedule.objects.get()
        page = operator_client.get(response["Location"]).content.decode()
        listed = operator_client.get("/pipelines/fanout_demo/").content.decode()
        schedules = operator_client.get("/schedules/").content.decode()

    assert response.status_code == 302 and response["Location"] == f"/schedules/{schedule.pk}/"
    assert (schedule.pipeline_name, schedule.cron, schedule.timezone) == ("fanout_demo", "30 2 * * *", "Europe/Berlin")
    assert "At 02:30" in page and "Thu 2026-12-03 02:30 CET" in page and "Mon 2026-12-07 02:30 CET" in page
    assert "No slot has come due yet." in page
    event = AuditEvent.objects.get(action=AuditAction.SCHEDULE_CREATE)
    assert event.details["cron"] == "30 2 * * *" and event.target_url == f"/schedules/{schedule.pk}/"
    assert "nightly" in listed and "At 02:30" in listed
    assert "nightly" in schedules


@pytest.mark.parametrize("changes, field_error", [
    ({"cron": "61 2 * * *"}, "The minute field &#x27;61&#x27; is not valid: it takes 0-59"),
    ({"cron": "30 2 * *"}, "A cron expression has 5 fields"),
    ({"cron": ""}, "This field is required."),
    ({"timezone": "Mars/Olympus"}, "Select a valid choice. Mars/Olympus is not one of the available choices."),
    ({"slot_param": "rows"}, "fanout_demo has no date or text parameter named “rows”."),
    ({"overlap": "sometimes"}, "Select a valid choice. sometimes is not one of the available choices."),
    ({"parameter_set": "99999"}, "Pick one of the pipeline&#x27;s parameter sets."),
    ({"name": "   "}, "This field is required."),
])
def test_a_bad_field_is_refused_naming_what_is_wrong_and_nothing_is_saved(operator_client, changes, field_error):
    response = create(operator_client, **changes)

    assert response.status_code == 422
    assert field_error in response.content.decode()
    assert not Schedule.objects.exists() and not AuditEvent.objects.exists()


def test_a_second_schedule_of_the_same_name_is_refused(operator_client):
    create(operator_client)
    response = create(operator_client, cron="0 3 * * *")
    assert response.status_code == 422 and "fanout_demo already has a schedule named “nightly”." in response.content.decode()
    assert Schedule.objects.count() == 1


def test_the_preview_puts_an_expression_in_words_or_names_what_is_wrong(operator_client):
    good = operator_client.get("/schedules/preview/", {"cron": "*/15 9-17 * * 1-5", "timezone": "America/New_York"})
    bad = operator_client.get("/schedules/preview/", {"cron": "0 25 * * *", "timezone": "UTC"})

    assert "Every 15 minutes, between 09:00 and 17:59, Monday through Friday" in good.content.decode()
    assert good.content.decode().count("<time ") == 5 and ("EST" in good.content.decode() or "EDT" in good.content.decode())
    assert "The hour field &#x27;25&#x27; is not valid: it takes 0-23" in bad.content.decode()


def test_edits_are_audited_with_what_changed_and_a_new_expression_starts_from_now(operator_client):
    create(operator_client)
    schedule = Schedule.objects.get()
    Schedule.objects.filter(pk=schedule.pk).update(last_slot=datetime.datetime(2020, 1, 1, tzinfo=UTC))

    response = operator_client.post(f"/schedules/{schedule.pk}/edit/", {**GOOD, "cron": "0 6 * * 1", "overlap": "queue"})

    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.cron == "0 6 * * 1" and schedule.last_slot.year >= 2026  # no catch-up of slots the old one never had
    event = AuditEvent.objects.get(action=AuditAction.SCHEDULE_EDIT)
    assert event.details["changes"] == {"cron": ["30 2 * * *", "0 6 * * 1"], "overlap": ["skip", "queue"]}
    assert "cron, overlap changed" in operator_client.get(response["Location"]).content.decode()


def test_turning_a_schedule_off_and_on_is_audited_and_on_does_not_catch_up_the_off_time(operator_client):
    create(operator_client, cron="* * * * *")
    schedule = Schedule.objects.get()
    operator_client.post(f"/schedules/{schedule.pk}/toggle/")
    schedule.refresh_from_db()
    assert not schedule.enabled
    assert "Off: no slot is due until it is turned on." in operator_client.get(schedule.get_absolute_url()).content.decode()

    operator_client.post(f"/schedules/{schedule.pk}/toggle/")

    schedule.refresh_from_db()
    assert schedule.enabled
    assert [e.action for e in AuditEvent.objects.order_by("id")][1:] == [AuditAction.SCHEDULE_OFF, AuditAction.SCHEDULE_ON]
    assert scheduler.tick() == []  # nothing is due from the minutes it was off


def test_deleting_a_schedule_keeps_its_runs_and_the_audit_trail_names_it(operator_client, define):
    create(operator_client, cron="0 * * * *")
    schedule = Schedule.objects.get()
    Schedule.objects.filter(pk=schedule.pk).update(last_slot=datetime.datetime.now(UTC) - datetime.timedelta(hours=2))
    scheduler.tick()
    run = Run.objects.get()

    response = operator_client.post(f"/schedules/{schedule.pk}/delete/")

    assert response.status_code == 302 and response["Location"] == "/pipelines/fanout_demo/"
    assert not Schedule.objects.exists() and not ScheduledSlot.objects.exists() and Run.objects.filter(pk=run.pk).exists()
    event = AuditEvent.objects.get(action=AuditAction.SCHEDULE_DELETE)
    assert event.target_label == "fanout_demo / nightly" and event.details["cron"] == "0 * * * *"


def test_a_paused_pipeline_shows_everywhere_and_a_manual_run_warns_but_runs(operator_client):
    create(operator_client)
    refused = operator_client.post("/pipelines/fanout_demo/pause/", {"paused": "1", "reason": ""}, follow=True)
    assert "Give a short reason to pause it" in refused.content.decode() and not PipelineState.objects.filter(paused=True).exists()

    operator_client.post("/pipelines/fanout_demo/pause/", {"paused": "1", "reason": "source table is being rebuilt"})

    detail = operator_client.get("/pipelines/fanout_demo/").content.decode()
    assert "Paused" in detail and "source table is being rebuilt" in detail
    assert "pipeline paused" in operator_client.get("/schedules/").content.decode()
    assert "paused" in operator_client.get("/pipelines/").content.decode()
    assert "fanout_demo" in operator_client.get("/dashboard/").content.decode().split("Paused pipelines")[1]
    started = operator_client.post("/pipelines/fanout_demo/run/", {"rows": "5", "seed": "1", "pause": "0"}, follow=True)
    assert "fanout_demo is paused: this run was started by hand and runs" in started.content.decode()
    assert Run.objects.count() == 1

    operator_client.post("/pipelines/fanout_demo/pause/", {"paused": "0"})

    assert not PipelineState.objects.filter(paused=True).exists()
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="pipeline_").order_by("id")] == [
        AuditAction.PIPELINE_PAUSE, AuditAction.PIPELINE_RESUME,
    ]
    assert AuditEvent.objects.get(action=AuditAction.PIPELINE_PAUSE).details == {"reason": "source table is being rebuilt"}


def test_a_schedule_runs_with_its_parameter_sets_latest_revision(operator_client, operator):
    pset = paramsets.create("fanout_demo", "big", {"rows": 500, "seed": 3, "pause": 0.0}, operator)
    create(operator_client, parameter_set=str(pset.pk), cron="0 * * * *")
    paramsets.save_revision(pset, {"rows": 600, "seed": 3, "pause": 0.0}, operator)
    Schedule.objects.update(last_slot=datetime.datetime.now(UTC) - datetime.timedelta(hours=1, minutes=1))

    scheduler.tick()

    run = Run.objects.get()
    assert run.params["rows"] == 600 and run.parameter_revision.number == 2


def test_stakeholders_cannot_see_or_change_schedules(client, operator, stakeholder):
    client.force_login(operator)
    create(client)
    schedule = Schedule.objects.get()
    client.force_login(stakeholder)
    stakeholder_client = client
    for url in ("/schedules/", f"/schedules/{schedule.pk}/", "/pipelines/fanout_demo/schedules/new/"):
        assert stakeholder_client.get(url).status_code == 403
    assert stakeholder_client.post(f"/schedules/{schedule.pk}/toggle/").status_code == 403
    assert stakeholder_client.post("/pipelines/fanout_demo/pause/", {"paused": "1", "reason": "x"}).status_code == 403
    assert Schedule.objects.get().enabled and not PipelineState.objects.exists()
    assert "Schedules" not in stakeholder_client.get("/pipelines/fanout_demo/").content.decode()
