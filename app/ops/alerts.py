"""Alerts: conditions that open incidents, and the messages that tell people.

Two worker jobs (one worker per period each, through their leases):
- `evaluate` looks at every rule that is on: each subject for which its condition holds (a
  pipeline whose latest run failed, a schedule whose slot did not succeed in time, the
  workers, the queue; a live model's errors, latency, drift or silence, app.ops.model_alerts)
  has one open incident — opened once, with one message per channel,
  reminded at most every `remind_hours` unless acknowledged, closed with a recovery message
  when the condition clears. A pipeline failing a hundred times in a row is one incident.
- `deliver` sends the messages waiting, each to its channel: email through Django's email
  settings, chat and webhooks through Apprise. A message that fails is tried again later
  (30 s, 1 min, 2 min … at most an hour apart; given up after MAX_ATTEMPTS), and every try's
  outcome is kept. Sending happens on a thread of its own, never in a step or a request, so a
  channel that hangs or refuses never slows or fails a run.

Modelled on healthchecks' flips and sendalerts: state changes are rows, deliveries are rows
claimed with a conditional UPDATE, so any number of workers send each message once.
"""

import datetime
import logging
import threading

import apprise
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from app.models import (
    FINISHED,
    AlertChannel,
    AlertRule,
    AuditAction,
    ChannelKind,
    CloseReason,
    Condition,
    Delivery,
    DeliveryEvent,
    Incident,
    PipelineState,
    Run,
    Schedule,
    ScheduledSlot,
    Status,
    StepRun,
    WorkerHeartbeat,
)
from app.ops import model_alerts, scheduler
from app.ops.findings import Finding, duration
from app.pipelines.registry import registry
from app.runs import audit
from app.runs.worker import dead_after

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
CLAIM = datetime.timedelta(minutes=5)  # a claimed delivery is someone else's to try for this long


# --- conditions ------------------------------------------------------------------------------


def holding(rule: AlertRule, now) -> dict[str, Finding]:
    """Each subject the rule's condition holds for now, and what to say about it."""
    return CONDITIONS[rule.condition](rule, now)


def _pipelines(rule: AlertRule) -> list[str]:
    return [rule.pipeline_name] if rule.pipeline_name else sorted(registry.pipelines())


def _run_failed(rule, now):
    found = {}
    for name in _pipelines(rule):
        run = Run.objects.filter(pipeline_name=name, status__in=FINISHED).exclude(status=Status.CANCELLED).order_by("-id").first()
        if run is None or run.status == Status.SUCCEEDED:
            continue
        failed = run.step_runs.filter(status=Status.FAILED, map_of__isnull=True).exclude(error="").first()
        found[name] = Finding(
            f"{name}: run #{run.pk} failed",
            f"{failed.step_name}: {failed.error}" if failed else run.get_status_display(),
            run.get_absolute_url(),
        )
    return found


def _no_worker(rule, now):
    if WorkerHeartbeat.objects.filter(last_seen__gte=now - dead_after(), stopping=False).exists():
        return {}
    last = WorkerHeartbeat.objects.order_by("-last_seen").first()
    since = last.last_seen if last else rule.created_at
    if now - since < datetime.timedelta(minutes=rule.minutes):
        return {}
    detail = f"the last one, {last.name}, was seen at {last.last_seen:%Y-%m-%d %H:%M:%S} UTC" if last else "no worker has ever reported"
    return {"workers": Finding(f"no live worker for more than {rule.minutes} min: nothing runs", detail, reverse("dashboard"))}


def _queued_long(rule, now):
    waiting = StepRun.objects.filter(status=Status.QUEUED, queued_at__lt=now - datetime.timedelta(minutes=rule.minutes))
    if rule.pipeline_name:
        waiting = waiting.filter(run__pipeline_name=rule.pipeline_name)
    oldest = waiting.order_by("queued_at").select_related("run").first()
    if oldest is None:
        return {}
    count = waiting.count()
    subject = rule.pipeline_name or "queue"
    return {subject: Finding(
        f"{count} step(s) waiting in the queue for more than {rule.minutes} min",
        f"the oldest: {oldest.step_name} of run #{oldest.run_id} ({oldest.run.pipeline_name}), queued at {oldest.queued_at:%H:%M:%S} UTC",
        oldest.run.get_absolute_url(),
    )}


def _schedule_late(rule, now):
    found = {}
    paused = set(PipelineState.objects.filter(paused=True).values_list("pipeline_name", flat=True))
    schedules = Schedule.objects.filter(enabled=True).exclude(pipeline_name__in=paused)
    if rule.pipeline_name:
        schedules = schedules.filter(pipeline_name=rule.pipeline_name)
    grace = datetime.timedelta(minutes=rule.minutes)
    for schedule in schedules:
        zone = scheduler.check_timezone(schedule.timezone)
        # The latest slot whose grace period is over.
        slot = scheduler.latest_slot(schedule.cron, zone, until=now - grace, after=schedule.created_at)
        if slot is None:
            continue
        row = ScheduledSlot.objects.filter(schedule=schedule, slot__gte=slot).select_related("run").order_by("slot").first()
        if row is not None and row.run is not None and row.run.status == Status.SUCCEEDED:
            continue
        if row is not None and row.outcome in ("skipped", "paused"):
            continue  # the schedule chose not to run it
        when = f"{slot.astimezone(zone):%Y-%m-%d %H:%M %Z}"
        if row is None:
            finding = Finding(f"“{schedule.name}” ({schedule.pipeline_name}): no run started for the {when} slot",
                              "no worker started it: are the workers running?", schedule.get_absolute_url())
        elif row.run is None:
            finding = Finding(f"“{schedule.name}” ({schedule.pipeline_name}): the {when} slot did not start", row.message,
                              schedule.get_absolute_url())
        else:
            finding = Finding(
                f"“{schedule.name}” ({schedule.pipeline_name}): the run of the {when} slot has not succeeded "
                f"within {rule.minutes} min ({row.run.get_status_display()})", "", row.run.get_absolute_url(),
            )
        found[f"schedule {schedule.pk}"] = finding
    return found


CONDITIONS = {
    Condition.RUN_FAILED: _run_failed,
    Condition.NO_WORKER: _no_worker,
    Condition.QUEUED_LONG: _queued_long,
    Condition.SCHEDULE_LATE: _schedule_late,
    **model_alerts.CONDITIONS,
}


def describe(rule: AlertRule) -> str:
    """What a rule watches, in a few words, for the list of rules."""
    if rule.condition in model_alerts.MODEL_CONDITIONS:
        return model_alerts.describe(rule)
    minutes = duration(rule.minutes)
    return {
        Condition.RUN_FAILED: rule.get_condition_display(),
        Condition.SCHEDULE_LATE: f"a scheduled run did not succeed within {minutes} of its slot",
        Condition.NO_WORKER: f"no live worker for {minutes}",
        Condition.QUEUED_LONG: f"steps waiting in the queue for more than {minutes}",
    }.get(rule.condition, rule.get_condition_display())


def watches(rule: AlertRule) -> str:
    """The pipeline or model a rule watches (every one when it names none)."""
    if rule.condition in model_alerts.MODEL_CONDITIONS:
        return rule.model_name or "every live model"
    if rule.condition == Condition.NO_WORKER:
        return "the workers"
    return rule.pipeline_name or "every pipeline"


def detail_label(rule: AlertRule) -> str:
    """What an incident's detail line is: a pipeline's last error, or a model's numbers."""
    return "Details" if rule.condition in model_alerts.MODEL_CONDITIONS else "Last error"


# --- incidents -------------------------------------------------------------------------------


def evaluate(now=None) -> list[Incident]:
    """Open, remind and close incidents for every rule that is on; returns those changed."""
    now = now or timezone.now()
    changed = []
    for rule in AlertRule.objects.filter(enabled=True).prefetch_related("channels"):
        try:
            changed.extend(_evaluate(rule, now))
        except Exception:
            log.exception("alert rule %s could not be evaluated; the next period tries again", rule.pk)
    Incident.objects.filter(rule__enabled=False, closed_at__isnull=True).update(
        closed_at=now, closed_because=CloseReason.RULE_OFF)
    return changed


def _evaluate(rule: AlertRule, now) -> list[Incident]:
    found = holding(rule, now)
    open_ = {incident.subject: incident for incident in rule.incidents.filter(closed_at__isnull=True)}
    changed = []
    for subject, finding in found.items():
        incident = open_.get(subject)
        if incident is None:
            try:
                with transaction.atomic():
                    incident = Incident.objects.create(rule=rule, subject=subject, summary=finding.summary[:300],
                                                       detail=finding.detail[:500], link=finding.link, opened_at=now)
                    notify(incident, DeliveryEvent.OPENED, now)
            except IntegrityError:
                continue  # another evaluator opened it a moment ago
            changed.append(incident)
            continue
        Incident.objects.filter(pk=incident.pk).update(summary=finding.summary[:300], detail=finding.detail[:500], link=finding.link)
        due = incident.notified_at is None or now - incident.notified_at >= datetime.timedelta(hours=rule.remind_hours)
        if rule.remind_hours and incident.acknowledged_at is None and due:
            with transaction.atomic():
                if Incident.objects.filter(pk=incident.pk, notified_at=incident.notified_at).update(notified_at=now):
                    incident.summary, incident.detail = finding.summary, finding.detail
                    notify(incident, DeliveryEvent.REMINDER, now)
                    changed.append(incident)
    for subject, incident in open_.items():
        if subject in found:
            continue
        with transaction.atomic():
            if Incident.objects.filter(pk=incident.pk, closed_at__isnull=True).update(
                    closed_at=now, closed_because=CloseReason.RECOVERED):
                incident.closed_at, incident.closed_because = now, CloseReason.RECOVERED
                notify(incident, DeliveryEvent.RECOVERED, now)
                changed.append(incident)
    return changed


def notify(incident: Incident, event: str, now=None):
    """Queue one message about `incident` to each of its rule's channels that is on."""
    now = now or timezone.now()
    title, body = message(incident, event)
    for channel in incident.rule.channels.filter(enabled=True):
        Delivery.objects.create(incident=incident, channel=channel, event=event, title=title, body=body, next_try_at=now)
    if event != DeliveryEvent.RECOVERED:
        Incident.objects.filter(pk=incident.pk).update(notified_at=now)
    sender.kick()


def message(incident: Incident, event: str) -> tuple[str, str]:
    link = f"{settings.SITE_URL.rstrip('/')}{incident.link}" if incident.link else ""
    page = f"{settings.SITE_URL.rstrip('/')}{incident.get_absolute_url()}"
    since = f"{incident.opened_at:%Y-%m-%d %H:%M} UTC"
    if event == DeliveryEvent.RECOVERED:
        title = f"[mlops] recovered: {incident.summary}"
        lines = [f"Recovered at {incident.closed_at:%Y-%m-%d %H:%M} UTC, after {_took(incident)}.", f"It was: {incident.summary}"]
    else:
        prefix = "still failing" if event == DeliveryEvent.REMINDER else "alert"
        title = f"[mlops] {prefix}: {incident.summary}"
        lines = [incident.summary, f"Since {since} (rule “{incident.rule.name}”)."]
        if incident.detail:
            lines.append(f"{detail_label(incident.rule)}: {incident.detail}")
    if link:
        lines.append(f"Look: {link}")
    lines.append(f"Incident: {page}")
    return title[:300], "\n".join(lines)


def _took(incident: Incident) -> str:
    minutes = int((incident.closed_at - incident.opened_at).total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def acknowledge(incident: Incident, user) -> bool:
    """Stop the reminders of an open incident (it still closes, with its recovery message)."""
    with transaction.atomic():
        if not Incident.objects.filter(pk=incident.pk, closed_at__isnull=True, acknowledged_at__isnull=True).update(
            acknowledged_by=user, acknowledged_at=timezone.now()
        ):
            return False
        audit.record(user, AuditAction.INCIDENT_ACK, incident, details={"summary": incident.summary})
    return True


# --- delivery --------------------------------------------------------------------------------


class DeliveryError(Exception):
    pass


def send(channel: AlertChannel, title: str, body: str):
    """Send one message now; DeliveryError saying why it was not sent."""
    if channel.kind == ChannelKind.EMAIL:
        recipients = [address.strip() for address in channel.target.split(",") if address.strip()]
        try:
            send_mail(title, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
        except Exception as exc:  # noqa: BLE001 — whatever the mail server says
            raise DeliveryError(f"the mail server refused it ({type(exc).__name__}: {exc})"[:500]) from None
        return
    target = apprise.Apprise()
    if not target.add(channel.target):
        raise DeliveryError("not a URL Apprise knows (see its list of services)")
    with apprise.LogCapture(level=apprise.logging.WARNING, fmt="%(message)s") as output:
        sent = target.notify(title=title, body=body)
        said = " ".join(line.strip() for line in output.getvalue().splitlines() if line.strip())
    if not sent:
        raise DeliveryError(f"the target did not take it{': ' + said if said else ''}"[:500])


def backoff(attempts: int) -> datetime.timedelta:
    return datetime.timedelta(seconds=min(3600, 30 * 2 ** max(0, attempts - 1)))


def deliver(now=None, limit=50) -> int:
    """Send the messages that are due; returns how many were sent."""
    now = now or timezone.now()
    sent = 0
    due = Delivery.objects.filter(state=Delivery.State.PENDING, next_try_at__lte=now).order_by("next_try_at")
    for delivery in due.select_related("channel")[:limit]:
        # Claimed by moving next_try_at on: one sender per delivery, however many workers.
        if not Delivery.objects.filter(pk=delivery.pk, state=Delivery.State.PENDING, next_try_at=delivery.next_try_at).update(
            next_try_at=now + CLAIM
        ):
            continue
        attempts = delivery.attempts + 1
        try:
            send(delivery.channel, delivery.title, delivery.body)
        except DeliveryError as exc:
            gave_up = attempts >= MAX_ATTEMPTS
            Delivery.objects.filter(pk=delivery.pk).update(
                attempts=attempts, last_error=str(exc)[:500], next_try_at=timezone.now() + backoff(attempts),
                state=Delivery.State.FAILED if gave_up else Delivery.State.PENDING,
            )
            log.warning("alert to %s, try %d%s: %s", delivery.channel, attempts, " (given up)" if gave_up else "", exc)
        else:
            Delivery.objects.filter(pk=delivery.pk).update(
                attempts=attempts, state=Delivery.State.SENT, sent_at=timezone.now(), last_error="",
            )
            sent += 1
    return sent


class Sender:
    """A daemon thread of a worker process that sends due messages, woken by `kick` (and by
    the worker job, so retries come due), so a slow channel delays neither steps nor the
    worker's sign of life. Off elsewhere (`enabled` is set by run_huey): the web sends only
    test messages, at once."""

    def __init__(self):
        self.enabled = False
        self.wake = threading.Event()
        self.thread = None
        self.lock = threading.Lock()

    def kick(self):
        if not self.enabled:
            return
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="alert-sender", daemon=True)
                self.thread.start()
        self.wake.set()

    def _loop(self):
        while True:
            self.wake.wait(30)
            self.wake.clear()
            try:
                deliver()
            except Exception:
                log.exception("sending alerts failed; the next try is in 30 s")
            finally:
                connection.close()


sender = Sender()


def open_incidents():
    return Incident.objects.filter(closed_at__isnull=True).select_related("rule", "acknowledged_by")




# --- what operators change (audited) ---------------------------------------------------------


def saved(thing, user, change: str) -> int:
    """Record in the audit trail that an operator created, changed or deleted a channel or
    a rule (`thing`), with what it now is (a channel's target as shown, never its secret).
    A rule saved off stops watching at once: its open incidents are closed, without a
    recovery message (nothing recovered); returns how many, for the operator to be told."""
    closed = 0
    if isinstance(thing, AlertChannel):
        action, details = AuditAction.ALERT_CHANNEL, {"kind": thing.kind, "target": thing.shown_target}
    else:
        action = AuditAction.ALERT_RULE
        details = {"condition": thing.condition, "pipeline": thing.pipeline_name, "minutes": thing.minutes,
                   "channels": sorted(c.name for c in thing.channels.all()) if thing.pk else []}
        if thing.condition in model_alerts.MODEL_CONDITIONS:
            details.update(model=thing.model_name, threshold=thing.threshold)
        if thing.pk and not thing.enabled:
            closed = Incident.objects.filter(rule=thing, closed_at__isnull=True).update(
                closed_at=timezone.now(), closed_because=CloseReason.RULE_OFF)
            if closed:
                details["closed_incidents"] = closed
    audit.record(user, action, thing, details={"change": change, "enabled": thing.enabled, **details})
    return closed


def test_message(channel: AlertChannel, user) -> Delivery:
    """Send a test message to `channel` now and record it; its state says whether it went."""
    title = "[mlops] test alert"
    body = f"A test of the channel “{channel.name}”, sent by {user.get_username()} from {settings.SITE_URL}."
    delivery = Delivery.objects.create(channel=channel, event=DeliveryEvent.TEST, title=title, body=body,
                                       next_try_at=timezone.now(), attempts=1)
    try:
        send(channel, title, body)
    except DeliveryError as exc:
        Delivery.objects.filter(pk=delivery.pk).update(state=Delivery.State.FAILED, last_error=str(exc)[:500])
    else:
        Delivery.objects.filter(pk=delivery.pk).update(state=Delivery.State.SENT, sent_at=timezone.now())
    delivery.refresh_from_db()
    return delivery
