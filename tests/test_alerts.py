"""Alerts: each condition opens one incident and one message per channel, reminds unless
acknowledged, recovers with a message; deliveries to email (Django's locmem backend) and a
webhook (a small HTTP server on loopback, through Apprise's json:// target) are retried
with backoff and recorded, and never touch a run."""

import datetime
import http.server
import json
import threading
import time
import zoneinfo

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from app.models import (
    AlertChannel,
    AlertRule,
    Delivery,
    Incident,
    Run,
    Schedule,
    ScheduledSlot,
    Status,
    WorkerHeartbeat,
)
from app.ops import alerts, scheduler
from app.pipelines import Params, param
from app.runs import engine, tasks
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


class Hook:
    """A webhook on loopback: records what it takes, answers with the next of `answers`
    (a status, or "hang" to answer only after the caller has given up)."""

    def __init__(self):
        self.received = []
        self.answers = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer = hook.answers.pop(0) if hook.answers else 200
                if answer == "hang":
                    time.sleep(3)
                    answer = 200
                elif answer < 300:  # what it took; a refusal took nothing
                    hook.received.append(json.loads(body))
                self.send_response(answer)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"json://127.0.0.1:{self.server.server_port}/hook?rto=1&cto=1"

    def titles(self):
        return [message["title"] for message in self.received]


@pytest.fixture
def hook():
    made = Hook()
    yield made
    made.server.shutdown()


class FlipParams(Params):
    fail: bool = param(False)


@pytest.fixture
def flip(define):
    pipe = define("t_flip", params=FlipParams)

    @pipe.step()
    def work(ctx):
        if ctx.params.fail:
            raise ValueError("the input table is empty")
        return 1

    return pipe


def run(fail):
    return engine.run_inline(*engine.start_run("t_flip", {"fail": fail}))


def rule_with(hook, condition="run_failed", **fields):
    rule = AlertRule.objects.create(name=f"r-{condition}", condition=condition, **fields)
    rule.channels.add(
        AlertChannel.objects.create(name="ops mail", kind="email", target="ops@example.com, oncall@example.com"),
        AlertChannel.objects.create(name="ops hook", kind="apprise", target=hook.url),
    )
    return rule


def test_a_pipeline_failing_again_and_again_is_one_incident_one_message_and_one_recovery(flip, hook):
    rule_with(hook, pipeline_name="t_flip")
    failed = run(True)

    alerts.evaluate()
    assert alerts.deliver() == 2

    incident = Incident.objects.get()
    assert incident.is_open and incident.summary == f"t_flip: run #{failed.pk} failed"
    (email,) = mail.outbox
    assert email.to == ["ops@example.com", "oncall@example.com"]
    assert email.subject == f"[mlops] alert: t_flip: run #{failed.pk} failed"
    assert "Last error: work: ValueError: the input table is empty" in email.body
    assert f"/runs/{failed.pk}/" in email.body and f"/incidents/{incident.pk}/" in email.body
    assert hook.titles() == [email.subject]

    for _ in range(3):  # it keeps failing: still one incident, nothing more sent
        run(True)
        alerts.evaluate()
        alerts.deliver()
    assert Incident.objects.count() == 1 and len(mail.outbox) == 1 and len(hook.received) == 1

    run(False)
    alerts.evaluate()
    alerts.deliver()

    incident.refresh_from_db()
    assert incident.closed_at is not None
    assert mail.outbox[-1].subject == f"[mlops] recovered: {incident.summary}"
    assert hook.titles()[-1].startswith("[mlops] recovered:")
    assert Delivery.objects.filter(state=Delivery.State.SENT).count() == 4


def test_a_webhook_that_fails_or_hangs_is_retried_with_backoff_and_every_try_recorded(flip, hook):
    rule_with(hook, pipeline_name="t_flip")
    hook.answers = [500, "hang"]
    failed = run(True)
    alerts.evaluate()
    start = timezone.now()

    alerts.deliver()

    to_hook = Delivery.objects.get(channel__kind="apprise")
    assert to_hook.state == Delivery.State.PENDING and to_hook.attempts == 1
    assert "the target did not take it" in to_hook.last_error and "500" in to_hook.last_error
    assert Delivery.objects.get(channel__kind="email").state == Delivery.State.SENT  # one channel does not hold up another
    assert Run.objects.get(pk=failed.pk).status == Status.FAILED  # the run is what it was

    with time_machine.travel(start + datetime.timedelta(seconds=31), tick=False):
        alerts.deliver()  # the second try: the hook hangs past the 1 s read timeout
    to_hook.refresh_from_db()
    assert to_hook.attempts == 2 and to_hook.state == Delivery.State.PENDING and to_hook.last_error

    with time_machine.travel(start + datetime.timedelta(seconds=31 + 61), tick=False):
        alerts.deliver()
    to_hook.refresh_from_db()
    assert to_hook.state == Delivery.State.SENT and to_hook.attempts == 3 and to_hook.last_error == ""
    assert hook.titles() == [to_hook.title]


def test_a_channel_that_always_fails_is_given_up_after_the_last_try(flip, hook):
    rule = AlertRule.objects.create(name="r", condition="run_failed", pipeline_name="t_flip")
    rule.channels.add(AlertChannel.objects.create(name="nowhere", kind="apprise", target="json://127.0.0.1:1/x?cto=1"))
    run(True)
    alerts.evaluate()
    when = timezone.now()
    for _ in range(alerts.MAX_ATTEMPTS):
        with time_machine.travel(when, tick=False):
            alerts.deliver()
        when += datetime.timedelta(hours=2)
    delivery = Delivery.objects.get()
    assert delivery.state == Delivery.State.FAILED and delivery.attempts == alerts.MAX_ATTEMPTS


def test_an_open_incident_reminds_until_it_is_acknowledged(flip, hook, operator):
    rule_with(hook, pipeline_name="t_flip", remind_hours=1)
    run(True)
    start = timezone.now()
    alerts.evaluate(start)
    alerts.deliver()

    alerts.evaluate(start + datetime.timedelta(minutes=30))
    alerts.evaluate(start + datetime.timedelta(minutes=61))
    alerts.deliver(start + datetime.timedelta(minutes=61))
    assert [m.subject.split(":")[0] for m in mail.outbox] == ["[mlops] alert", "[mlops] still failing"]

    incident = Incident.objects.get()
    assert alerts.acknowledge(incident, operator) and not alerts.acknowledge(incident, operator)
    alerts.evaluate(start + datetime.timedelta(minutes=200))
    alerts.deliver(start + datetime.timedelta(minutes=200))
    assert len(mail.outbox) == 2


def test_no_live_worker_opens_an_incident_after_the_grace_and_a_worker_closes_it(hook):
    rule = rule_with(hook, condition="no_worker", minutes=5)
    AlertRule.objects.filter(pk=rule.pk).update(created_at=timezone.now() - datetime.timedelta(minutes=10))

    (incident,) = alerts.evaluate()
    assert incident.subject == "workers" and "no live worker for more than 5 min" in incident.summary
    assert "no worker has ever reported" in incident.detail

    WorkerHeartbeat.objects.create(name="box:1", last_seen=timezone.now())
    alerts.evaluate()
    incident.refresh_from_db()
    assert incident.closed_at is not None


def test_steps_queued_too_long_open_an_incident(flip, hook):
    rule_with(hook, condition="queued_long", minutes=10)
    queued, _ready = engine.start_run("t_flip", {})
    queued.step_runs.update(queued_at=timezone.now() - datetime.timedelta(minutes=11))

    (incident,) = alerts.evaluate()

    assert incident.summary == "1 step(s) waiting in the queue for more than 10 min"
    assert f"work of run #{queued.pk} (t_flip)" in incident.detail


def test_a_scheduled_run_that_did_not_succeed_in_time_or_never_started_opens_an_incident(flip, hook):
    rule_with(hook, condition="schedule_late", minutes=30)
    schedule = Schedule.objects.create(pipeline_name="t_flip", name="hourly", cron="0 * * * *")
    Schedule.objects.filter(pk=schedule.pk).update(created_at=timezone.now() - datetime.timedelta(hours=3))

    (absent,) = alerts.evaluate()  # nothing ticked: no run for the last slot past its grace
    assert "no run started for the" in absent.summary and absent.subject == f"schedule {schedule.pk}"

    slot = alerts.scheduler.slots("0 * * * *", datetime.UTC, timezone.now() - datetime.timedelta(hours=2),
                                  until=timezone.now() - datetime.timedelta(minutes=30), limit=10)[-1]
    failed = run(True)
    ScheduledSlot.objects.create(schedule=schedule, slot=slot, outcome="started", run=failed)
    alerts.evaluate()
    absent.refresh_from_db()
    assert absent.is_open and "has not succeeded within 30 min (failed)" in absent.summary

    ScheduledSlot.objects.filter(schedule=schedule).update(run=run(False))
    alerts.evaluate()
    absent.refresh_from_db()
    assert absent.closed_at is not None


def test_an_every_minute_schedule_whose_last_run_was_weeks_ago_is_late_for_its_latest_slot(flip, hook):
    rule_with(hook, condition="schedule_late", minutes=5)
    schedule = Schedule.objects.create(pipeline_name="t_flip", name="each minute", cron="* * * * *")
    weeks_ago = timezone.now() - datetime.timedelta(weeks=3)
    Schedule.objects.filter(pk=schedule.pk).update(created_at=weeks_ago - datetime.timedelta(days=1))
    ScheduledSlot.objects.create(schedule=schedule, slot=weeks_ago.replace(second=0, microsecond=0), outcome="started",
                                 run=run(False))
    now = timezone.now()

    (late,) = alerts.evaluate(now)

    # The slot named is the latest past its grace, not one a week (10,080 slots) back.
    latest = (now - datetime.timedelta(minutes=5)).replace(second=0, microsecond=0)
    assert late.summary == f"“each minute” (t_flip): no run started for the {latest:%Y-%m-%d %H:%M} UTC slot"


@pytest.mark.parametrize("zone, until, expected", [
    # Berlin springs forward at 02:00 on 2026-03-29: the 02:30 slot does not exist on the clock.
    ("Europe/Berlin", "2026-03-29T01:10:00+00:00", "2026-03-29T01:00:00+00:00"),  # 03:00 CEST, not 02:30
    # New York falls back at 02:00 on 2026-11-01: 01:30 comes twice, the first one counts.
    ("America/New_York", "2026-11-01T06:45:00+00:00", "2026-11-01T05:30:00+00:00"),
    ("America/New_York", "2026-11-01T06:10:00+00:00", "2026-11-01T05:30:00+00:00"),  # 01:10 the second time
    ("UTC", "2026-01-01T10:30:00+00:00", "2026-01-01T10:30:00+00:00"),  # at `until` itself
])
def test_the_latest_slot_across_dst(zone, until, expected):
    until = datetime.datetime.fromisoformat(until)
    after = until - datetime.timedelta(days=30)
    assert scheduler.latest_slot("30 * * * *" if zone != "Europe/Berlin" else "0,30 * * * *",
                                 zoneinfo.ZoneInfo(zone), until, after) == datetime.datetime.fromisoformat(expected)
    assert scheduler.latest_slot("30 * * * *", zoneinfo.ZoneInfo(zone), until, after=until) is None


@pytest.mark.parametrize("zone, night", [
    ("Europe/Berlin", "2026-03-29T00:00:00+00:00"),  # 02:00 → 03:00
    ("Europe/Berlin", "2026-10-25T00:00:00+00:00"),  # 03:00 → 02:00: 02:xx comes twice
    ("America/New_York", "2026-03-08T06:00:00+00:00"),  # 02:00 → 03:00
    ("America/New_York", "2026-11-01T04:00:00+00:00"),  # 02:00 → 01:00: 01:xx comes twice
])
def test_the_latest_slot_is_the_last_the_scheduler_would_run_across_a_clock_change(zone, night):
    zone, night = zoneinfo.ZoneInfo(zone), datetime.datetime.fromisoformat(night)
    after = night - datetime.timedelta(days=2)
    for cron in ["* * * * *", "30 * * * *", "*/20 * * * *", "*/10 2 * * *", "15,45 1,2 * * *", "0 2 * * *"]:
        every = scheduler.slots(cron, zone, after, until=night + datetime.timedelta(hours=5), limit=10_000)
        for minutes in range(0, 4 * 60, 7):
            until = night + datetime.timedelta(minutes=minutes, seconds=7)
            expected = max((slot for slot in every if slot <= until), default=None)
            assert scheduler.latest_slot(cron, zone, until, after) == expected, f"{cron} until {until:%H:%M:%S} UTC"


@pytest.mark.worker
def test_on_a_real_worker_a_hanging_webhook_never_holds_up_runs(start_worker, hook):
    hook.answers = ["hang"]
    rule = AlertRule.objects.create(name="flaky", condition="run_failed", pipeline_name="flaky_demo")
    rule.channels.add(AlertChannel.objects.create(name="hook", kind="apprise", target=hook.url))
    start_worker(ALERTS_SECONDS="0.3", WORKER_BEAT_SECONDS="0.3")
    failed = engine.start_run("flaky_demo", {"fail": "true"})
    tasks.start(failed)
    tried = wait_for(lambda: Delivery.objects.filter(attempts__gte=1).first(), timeout=60, message="the first try of the alert")

    assert tried.state == Delivery.State.PENDING and "did not take it" in tried.last_error  # it hung: tried again later
    after = tasks.trigger("fanout_demo", {"rows": 100})
    wait_for(lambda: Run.objects.get(pk=after.pk).status == Status.SUCCEEDED, timeout=30, message="the next run to succeed")
    assert WorkerHeartbeat.objects.filter(last_seen__gte=timezone.now() - datetime.timedelta(seconds=5)).exists()
    assert Incident.objects.get().summary == f"flaky_demo: run #{failed[0].pk} failed"
