"""Schedules: cron expressions checked and put in words, slots across daylight-saving
changes, each slot started exactly once (by two real processes at the same moment too),
one catch-up after downtime, overlap policies, the slot parameter, paused pipelines."""

import datetime
import subprocess
import sys
import time
import zoneinfo

import pytest
import time_machine

from app.models import AuditAction, AuditEvent, PipelineState, Run, Schedule, ScheduledSlot, SlotOutcome, Status
from app.ops import scheduler
from app.pipelines import Params, param
from app.runs import engine
from tests.conftest import ROOT, process_env, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
UTC = datetime.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def at(*args, zone=UTC):
    return datetime.datetime(*args, tzinfo=zone)


# --- cron expressions -------------------------------------------------------------------------


@pytest.mark.parametrize("expression, message", [
    ("61 * * * *", "the minute field '61' is not valid: it takes 0-59"),
    ("0 24 * * *", "the hour field '24' is not valid: it takes 0-23"),
    ("0 0 0 * *", "the day-of-month field '0' is not valid: it takes 1-31"),
    ("0 0 * 13 *", "the month field '13' is not valid: it takes 1-12 or JAN-DEC"),
    ("0 0 * * MONDAY", "the day-of-week field 'MONDAY' is not valid"),
    ("*/0 * * * *", "the minute field '*/0' is not valid"),
    ("* * * *", "a cron expression has 5 fields (minute hour day-of-month month day-of-week), e.g. '30 2 * * *'; this one has 4"),
    ("", "this one has 0"),
    ("0 0 30 2 *", "'0 0 30 2 *' never comes due (no such date, e.g. 30 February)"),
])
def test_a_bad_cron_expression_is_refused_naming_the_bad_part(expression, message):
    with pytest.raises(scheduler.CronError) as refused:
        scheduler.check_cron(expression)
    assert message in str(refused.value)


def test_a_good_expression_is_normalised_and_put_in_words():
    assert scheduler.check_cron("  30   2 * *  1-5 ") == "30 2 * * 1-5"
    assert scheduler.check_cron("@daily") == "0 0 * * *"
    assert scheduler.describe("30 2 * * 1-5") == "At 02:30, Monday through Friday"
    assert scheduler.describe("*/15 * * * *") == "Every 15 minutes"


def test_an_unknown_time_zone_is_refused_naming_it():
    with pytest.raises(ValueError, match="'Mars/Olympus' is not a time zone: use a name such as Europe/Berlin"):
        scheduler.check_timezone("Mars/Olympus")


# --- slots across daylight-saving changes ------------------------------------------------------


@pytest.mark.parametrize("zone, start, days", [
    (BERLIN, at(2026, 3, 27), 4),       # clocks go 02:00 → 03:00 on 29 March
    (BERLIN, at(2026, 10, 23), 4),      # 03:00 → 02:00 on 25 October: 02:30 happens twice
    (NEW_YORK, at(2026, 3, 6), 4),      # 02:00 → 03:00 on 8 March
    (NEW_YORK, at(2026, 10, 30), 4),    # 02:00 → 01:00 on 1 November
])
def test_a_daily_slot_at_a_time_the_clocks_skip_or_repeat_runs_once_every_day(zone, start, days):
    found = scheduler.slots("30 2 * * *", zone, start, until=start + datetime.timedelta(days=days), limit=100)

    local_days = [slot.astimezone(zone).date() for slot in found]
    assert local_days == sorted(set(local_days)) and len(local_days) == days  # one a day: none skipped, none doubled
    assert all(slot.astimezone(zone).strftime("%H:%M") in ("02:30", "03:30") for slot in found)


def test_hourly_slots_are_each_wall_clock_hour_once_across_both_changes():
    spring = scheduler.slots("0 * * * *", BERLIN, at(2026, 3, 28, 23, 30), until=at(2026, 3, 29, 3, 30), limit=100)
    autumn = scheduler.slots("0 * * * *", BERLIN, at(2026, 10, 24, 21, 30), until=at(2026, 10, 25, 2, 30), limit=100)

    def wall(found):
        return [slot.astimezone(BERLIN).strftime("%H:%M %Z") for slot in found]

    # 02:00 does not exist on 29 March: that slot is 03:00 CEST, once.
    assert wall(spring) == ["01:00 CET", "03:00 CEST", "04:00 CEST", "05:00 CEST"]
    # 02:00 happens twice on 25 October: once, the first time; 03:00 CET follows.
    assert wall(autumn) == ["00:00 CEST", "01:00 CEST", "02:00 CEST", "03:00 CET"]
    assert len(set(spring)) == len(spring) and len(set(autumn)) == len(autumn)


# --- ticking ---------------------------------------------------------------------------------


class DatedParams(Params):
    until: datetime.date = param(datetime.date(2000, 1, 1), help="train on data up to this day")
    label: str = param("", help="a text parameter")
    rows: int = param(3, ge=1)


@pytest.fixture
def dated(define):
    pipe = define("t_dated", params=DatedParams)
    pipe.step(name="train")(lambda ctx: str(ctx.params.until))
    return pipe


def schedule(name="nightly", cron="30 2 * * *", zone="Europe/Berlin", created=None, **fields):
    made = Schedule.objects.create(pipeline_name=fields.pop("pipeline_name", "t_dated"), name=name, cron=cron,
                                   timezone=zone, **fields)
    if created is not None:
        Schedule.objects.filter(pk=made.pk).update(created_at=created)
        made.refresh_from_db()
    return made


def test_a_due_slot_starts_one_run_with_the_slots_date_and_says_it_was_scheduled(dated, operator_client):
    schedule(created=at(2026, 12, 1, 12), slot_param="until")

    with time_machine.travel(at(2026, 12, 2, 1, 31), tick=False):  # 02:31 in Berlin
        written = scheduler.tick()
        assert scheduler.tick() == []  # ticking again in the same minute starts nothing

    (row,) = written
    assert row.outcome == SlotOutcome.STARTED and row.slot == at(2026, 12, 2, 1, 30) and not row.is_catch_up
    run = Run.objects.get()
    assert run.trigger_source == "schedule" and run.params["until"] == "2026-12-02"
    event = AuditEvent.objects.get(action=AuditAction.TRIGGER)
    assert event.username == "schedule “nightly”" and event.details["slot"] == "2026-12-02T01:30:00+00:00"
    page = operator_client.get(f"/runs/{run.pk}/").content.decode()
    assert "Scheduled by" in page and "nightly" in page and "2026-12-02 02:30 CET" in page


def test_a_text_slot_parameter_gets_the_slots_time_with_its_offset(dated):
    schedule(created=at(2026, 7, 1), slot_param="label", zone="America/New_York", cron="0 6 * * *")
    with time_machine.travel(at(2026, 7, 2, 10, 1), tick=False):
        scheduler.tick()
    assert Run.objects.get().params["label"] == "2026-07-02T06:00:00-04:00"


def test_after_downtime_one_catch_up_run_stands_for_the_missed_slots(dated, operator_client):
    hourly = schedule(cron="0 * * * *", created=at(2026, 12, 2, 0, 30))

    with time_machine.travel(at(2026, 12, 2, 5, 10), tick=False):  # nothing ticked from 01:00 to 05:00
        (row,) = scheduler.tick()

    assert Run.objects.count() == 1
    assert row.slot == at(2026, 12, 2, 5) and row.missed == 4 and row.is_catch_up
    assert "a catch-up: one run for the 5 slots due while nothing ran" in row.message
    hourly.refresh_from_db()
    assert hourly.last_slot == at(2026, 12, 2, 5)
    assert "catch-up" in operator_client.get(f"/runs/{row.run_id}/").content.decode()


@pytest.mark.parametrize("overlap, second, runs", [
    ("skip", SlotOutcome.SKIPPED, 1),
    ("queue", SlotOutcome.WAITING, 1),
    ("allow", SlotOutcome.STARTED, 2),
])
def test_what_a_slot_does_while_the_previous_scheduled_run_is_still_going(dated, overlap, second, runs):
    schedule(cron="0 * * * *", created=at(2026, 12, 2, 0, 30), overlap=overlap)
    with time_machine.travel(at(2026, 12, 2, 1, 1), tick=False):
        (first,) = scheduler.tick()  # its run is queued; no worker runs it in this test
    with time_machine.travel(at(2026, 12, 2, 2, 1), tick=False):
        (row,) = scheduler.tick()

    assert row.outcome == second and Run.objects.count() == runs
    if overlap == "queue":
        engine.run_inline(first.run, list(first.run.step_runs.filter(status=Status.QUEUED).values_list("pk", flat=True)))
        with time_machine.travel(at(2026, 12, 2, 2, 2), tick=False):
            (started,) = scheduler.tick()  # the previous one finished: the waiting slot starts
        assert started.pk == row.pk and Run.objects.count() == 2
        row.refresh_from_db()
        assert row.outcome == SlotOutcome.STARTED and row.run is not None


def test_a_paused_pipeline_starts_nothing_and_its_schedule_goes_on_after_resume(dated):
    schedule(cron="0 * * * *", created=at(2026, 12, 2, 0, 30))
    PipelineState.objects.create(pipeline_name="t_dated", paused=True)
    with time_machine.travel(at(2026, 12, 2, 3, 1), tick=False):
        (row,) = scheduler.tick()
    assert row.outcome == SlotOutcome.PAUSED and not Run.objects.exists()

    PipelineState.objects.filter(pipeline_name="t_dated").update(paused=False)
    with time_machine.travel(at(2026, 12, 2, 4, 1), tick=False):
        (row,) = scheduler.tick()
    assert row.outcome == SlotOutcome.STARTED and row.missed == 0 and Run.objects.count() == 1


def test_a_slot_whose_run_cannot_start_says_why_and_the_schedule_goes_on(dated):
    schedule(cron="0 * * * *", created=at(2026, 12, 2, 0, 30), pipeline_name="t_gone")
    with time_machine.travel(at(2026, 12, 2, 1, 1), tick=False):
        (row,) = scheduler.tick()
    row.refresh_from_db()
    assert row.outcome == SlotOutcome.FAILED and row.message == "could not start: pipeline 't_gone' is not defined"
    with time_machine.travel(at(2026, 12, 2, 2, 1), tick=False):
        assert len(scheduler.tick()) == 1  # the next slot is tried again


def test_a_disabled_schedule_starts_nothing(dated):
    schedule(cron="* * * * *", created=at(2026, 12, 2), enabled=False)
    with time_machine.travel(at(2026, 12, 2, 1), tick=False):
        assert scheduler.tick() == []
    assert not Run.objects.exists()


# --- exactly once, with real processes --------------------------------------------------------

TICK_AT = """
import sys, time
import django
django.setup()
from app.ops import scheduler
deadline = float(sys.argv[-1])
time.sleep(max(0.0, deadline - time.time()))
print(len(scheduler.tick()))
"""


def test_two_processes_ticking_at_the_same_moment_start_each_slot_once():
    now = datetime.datetime.now(UTC)
    if now.minute == 59 and now.second > 30:  # the two ticks must see the same hour's slots
        time.sleep(61 - now.second)
    schedule(pipeline_name="fanout_demo", cron="0 * * * *", created=datetime.datetime.now(UTC) - datetime.timedelta(hours=3))
    moment = time.time() + 5  # both processes are up by then, and tick at that instant
    ticking = [
        subprocess.Popen([sys.executable, "-c", TICK_AT, str(moment)], cwd=ROOT, env=process_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [process.communicate(timeout=60) for process in ticking]

    assert all(process.returncode == 0 for process in ticking), results
    assert sorted(int(out.strip().splitlines()[-1]) for out, _err in results) == [0, 1]
    assert ScheduledSlot.objects.count() == 1 and Run.objects.count() == 1
    assert ScheduledSlot.objects.get().missed == 2  # the three hours since it was made: one catch-up


@pytest.mark.worker
def test_two_real_workers_start_a_schedules_slots_once_each(start_worker):
    every_minute = schedule(pipeline_name="fanout_demo", cron="* * * * *",
                            created=datetime.datetime.now(UTC) - datetime.timedelta(seconds=61))
    for _ in range(2):
        start_worker(SCHEDULER_SECONDS="0.2", WORKER_BEAT_SECONDS="0.2")

    row = wait_for(lambda: ScheduledSlot.objects.filter(schedule=every_minute).first(), timeout=30, message="a slot")
    run = wait_for(lambda: Run.objects.filter(pk=row.run_id, status=Status.SUCCEEDED).first(), timeout=60,
                   message="the scheduled run to succeed on a worker")
    assert run.trigger_source == "schedule"
    assert Run.objects.count() == ScheduledSlot.objects.filter(outcome=SlotOutcome.STARTED).count()
