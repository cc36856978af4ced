"""An operator in a real browser sets up a schedule: the expression is put in words with its
next times while it is typed, a bad one is named at once, and the first slot starts a run on
a real worker."""

import datetime

import pytest

from app.models import Run, Schedule, ScheduledSlot, Status
from tests.conftest import wait_for
from tests.test_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_an_operator_sets_up_a_schedule_and_its_first_slot_runs(live_server, start_worker, operator, page):
    page.goto(f"{live_server.url}/login/")
    log_in(page, operator)
    page.goto(f"{live_server.url}/pipelines/fanout_demo/")
    page.click("text=New schedule")
    page.wait_for_url(f"{live_server.url}/pipelines/fanout_demo/schedules/new/")

    page.fill("#id_name", "every minute")
    page.fill("#id_cron", "61 * * * *")
    page.locator("#cron-preview", has_text="The minute field '61' is not valid").wait_for()
    page.fill("#id_cron", "*/1 * * * *")
    page.select_option("#id_timezone", "Asia/Kolkata")
    preview = page.locator("#cron-preview", has_text="Every minute")
    preview.wait_for()
    assert preview.locator("time").count() == 5 and "IST" in preview.inner_text()
    page.click("text=Create schedule")
    page.wait_for_url(f"{live_server.url}/schedules/*/")
    assert "Schedule “every minute” created" in page.inner_text("main")
    schedule = Schedule.objects.get()
    assert (schedule.cron, schedule.timezone) == ("*/1 * * * *", "Asia/Kolkata")

    # A worker starts the first slot's run within a minute; the schedule's page lists it.
    start_worker(SCHEDULER_SECONDS="0.5", WORKER_BEAT_SECONDS="0.5")
    row = wait_for(lambda: ScheduledSlot.objects.filter(schedule=schedule, run__isnull=False).first(), timeout=90,
                   interval=0.5, message="the first slot's run")
    wait_for(lambda: Run.objects.filter(pk=row.run_id, status=Status.SUCCEEDED).exists(), timeout=60,
             message="the scheduled run to succeed")
    page.reload()
    assert f"#{row.run_id}" in page.locator("#slots table").inner_text()
    page.click(f"#slots >> text=#{row.run_id}")
    page.wait_for_url(f"{live_server.url}/runs/{row.run_id}/")
    local = row.slot.astimezone(datetime.timezone(datetime.timedelta(hours=5, minutes=30)))
    assert f"Scheduled by “every minute” for the slot of {local:%Y-%m-%d %H:%M} IST" in page.inner_text("main")
