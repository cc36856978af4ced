"""Backfills: every slot of a schedule in a past range, each with its slot, at most K runs
at a time (on a real worker too), with progress, cancel and retry of the failed slots."""

import datetime

import pytest

from app.models import AuditAction, AuditEvent, Backfill, Run, Schedule, Status
from app.ops import backfills
from app.pipelines import Params, param
from app.runs import engine
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
UTC = datetime.UTC


class DayParams(Params):
    day: datetime.date = param(datetime.date(2000, 1, 1))
    broken_day: str = param("", help="the day that fails")


@pytest.fixture
def daily(define):
    pipe = define("t_daily", params=DayParams)

    @pipe.step()
    def load(ctx):
        if str(ctx.params.day) == ctx.params.broken_day:
            raise RuntimeError(f"no data for {ctx.params.day}")
        return str(ctx.params.day)

    return Schedule.objects.create(pipeline_name="t_daily", name="nightly", cron="0 3 * * *", timezone="Europe/Berlin",
                                   slot_param="day")


def days_ago(days):
    return datetime.datetime.now(UTC) - datetime.timedelta(days=days)


def unfinished(backfill):
    return Run.objects.filter(pk__in=backfill.slots.values("run"), status__in=["queued", "running", "pending"]).count()


def finish_one(backfill):
    """Run one queued run of the backfill in this process, as a worker would."""
    run = Run.objects.filter(pk__in=backfill.slots.values("run"), status="queued").order_by("pk").first()
    engine.run_inline(run, list(run.step_runs.filter(status="queued").values_list("pk", flat=True)))


def test_a_backfill_of_ten_slots_runs_at_most_three_at_a_time_each_with_its_day(daily, operator):
    backfill = backfills.start(daily, days_ago(10), days_ago(0), 3, operator)

    assert backfill.slots.count() == 10 and unfinished(backfill) == 3
    seen_at_once = []
    while backfills.progress(backfill)["done"] < 10:
        finish_one(backfill)
        backfills.advance(backfill)
        seen_at_once.append(unfinished(backfill))
    assert max(seen_at_once) <= 3
    backfill.refresh_from_db()
    assert backfill.state == Backfill.State.DONE and backfill.finished_at
    days = sorted(run.params["day"] for run in Run.objects.all())
    expected = sorted(row.slot.astimezone(datetime.timezone(datetime.timedelta(hours=1))).date().isoformat()
                      for row in backfill.slots.all())
    assert days == expected and len(set(days)) == 10
    assert {run.trigger_source for run in Run.objects.all()} == {"backfill"}
    assert AuditEvent.objects.get(action=AuditAction.BACKFILL_START).details["slots"] == 10


def test_retry_runs_the_failed_slots_again_and_cancel_stops_the_rest(daily, operator, operator_client):
    backfill = backfills.start(daily, days_ago(5), days_ago(0), 10, operator)
    runs = list(Run.objects.order_by("pk"))
    broken = runs[1].params["day"]
    Run.objects.filter(pk=runs[1].pk).update(params={**runs[1].params, "broken_day": broken})
    for _ in runs:
        finish_one(backfill)
    assert backfills.progress(backfill)["failed"] == 1

    page = operator_client.get(f"/backfills/{backfill.pk}/").content.decode()
    assert "Run the 1 failed slot again" in page and f"no data for {broken}" not in page

    again = backfill.slots.get(run=runs[1])
    assert backfills.retry_failed(backfill, operator) == 1
    again.refresh_from_db()
    assert again.run_id != runs[1].pk and again.message == f"again: run #{runs[1].pk} failed"
    finish_one(backfill)
    backfills.advance(backfill)
    assert backfills.progress(backfill) == {"done": 5, "running": 0, "failed": 0, "waiting": 0, "cancelled": 0, "total": 5}

    other = backfills.start(daily, days_ago(5), days_ago(0), 2, operator)
    backfills.cancel(other, operator)
    counts = backfills.progress(other)
    assert counts["cancelled"] == 3 and counts["failed"] == 2  # the two running runs were cancelled
    assert not Run.objects.filter(status__in=["queued", "running"]).exists()
    with pytest.raises(backfills.BackfillError, match="is not running any more"):
        backfills.cancel(other, operator)


@pytest.mark.parametrize("start, end, message", [
    (2, 3, "The range ends before it starts."),
    (-1, -2, "A backfill runs past slots: end the range before now"),
    (4000, 0, "That range has more than 1000 slots of “nightly”: backfill a shorter one."),
])
def test_a_bad_range_is_refused_naming_why_and_starts_nothing(daily, operator_client, start, end, message):
    zone = datetime.timezone(datetime.timedelta(hours=1))
    data = {"start": days_ago(start).astimezone(zone).date().isoformat(), "end": days_ago(end).astimezone(zone).date().isoformat(),
            "max_parallel": "2"}
    if end < 0:  # a range in the future: its start is tomorrow
        data["start"] = data["end"] = (datetime.datetime.now(zone) + datetime.timedelta(days=2)).date().isoformat()

    response = operator_client.post(f"/schedules/{daily.pk}/backfill/", data)

    assert response.status_code == 422 and message in response.content.decode()
    assert not Backfill.objects.exists() and not Run.objects.exists()


def test_a_backfill_started_from_the_schedule_page_shows_its_progress(daily, operator_client):
    today = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=1))).date()
    response = operator_client.post(f"/schedules/{daily.pk}/backfill/", {
        "start": (today - datetime.timedelta(days=3)).isoformat(), "end": (today - datetime.timedelta(days=1)).isoformat(),
        "max_parallel": "1",
    }, follow=True)

    page = response.content.decode()
    assert "Backfill #" in page and "started: 3 slot(s), at most 1 at a time" in page
    assert 'hx-trigger="every 2s"' in page  # it refreshes itself while it runs
    assert page.count("waiting") >= 2 and Run.objects.count() == 1

    # Each poll reads the slots once, for the list and the counts both.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    backfill = Backfill.objects.get()
    with CaptureQueriesContext(connection) as queries:
        poll = operator_client.get(f"/backfills/{backfill.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert "waiting" in poll
    assert sum('FROM "app_backfillslot"' in q["sql"] for q in queries.captured_queries) == 1


@pytest.mark.worker
def test_on_a_real_worker_a_backfill_never_runs_more_than_k_at_once(start_worker, operator):
    schedule = Schedule.objects.create(pipeline_name="fanout_demo", name="hourly", cron="0 * * * *")
    last_hour = datetime.datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # 10 hourly slots, whatever the minute now: from just after one hour to just after the 10th.
    backfill = backfills.start(schedule, last_hour - datetime.timedelta(hours=9, minutes=30),
                               last_hour + datetime.timedelta(seconds=1), 3, operator)
    assert backfill.slots.count() == 10
    start_worker(SCHEDULER_SECONDS="0.2", WORKER_BEAT_SECONDS="0.2")

    seen = []

    def done():
        seen.append(unfinished(backfill))
        return backfills.progress(backfill)["done"] == 10

    wait_for(done, timeout=120, interval=0.1, message="the backfill to finish on the worker")
    assert max(seen) <= 3 and max(seen) >= 1
    assert Run.objects.filter(status=Status.SUCCEEDED).count() == 10
