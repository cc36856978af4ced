"""Schedules: which slots of a cron expression are due, and starting each exactly once.

A worker's periodic job (`tick`, every SCHEDULER_SECONDS, one worker per period through
its lease) looks at every schedule that is on. The slots are the cron expression's times
read as wall-clock times in the schedule's time zone (croniter does the expression), each
turned into one instant: a time the clocks skip in spring runs at the same offset past the
gap (02:30 on the night clocks go 02:00 → 03:00 runs at 03:30), a time they pass twice in
autumn runs the first time. So across a change no slot is skipped and none runs twice.

Exactly once: a schedule's `last_slot` is moved forward by a conditional UPDATE (of any
number of tickers, one wins), and the slot's row is unique per schedule and slot, in the
same transaction as the run it starts. After downtime the slots missed are not each run:
one run stands for them (the latest slot; a catch-up, saying how many it stands for).

Time is `django.utils.timezone.now()` throughout, so tests move it with time-machine.
"""

import datetime
import logging
import zoneinfo

from cron_descriptor import CasingTypeEnum, ExpressionDescriptor, Options
from croniter import croniter
from django.db import IntegrityError, transaction
from django.utils import timezone

from app.models import UNFINISHED, AuditAction, Overlap, PipelineState, Run, Schedule, ScheduledSlot, SlotOutcome
from app.pipelines.params import ParamError
from app.pipelines.registry import registry
from app.runs import audit, engine, tasks
from app.runs import tags as run_tags

log = logging.getLogger(__name__)

UTC = datetime.UTC
FIELDS = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-6 (Sunday is 0) or SUN-SAT"),
]
ALIASES = {
    "@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *",
}
MAX_MISSED = 1000  # a catch-up counts the slots it stands for up to this many
# latest_slot steps back past slots later than `until` only across a clock change: the times a
# gap skips (they run a gap's length on) or the rest of an hour passed twice, one a minute at
# most, and the longest change was a day (Samoa skipped 30 December 2011).
MAX_STEPS_BACK = 24 * 60 + 1


class CronError(ValueError):
    """What is wrong with a cron expression, in words naming the bad part."""


def check_cron(expression: str) -> str:
    """The expression in its five-field form, or CronError naming what is wrong."""
    text = " ".join(str(expression).split())
    text = ALIASES.get(text.lower(), text)
    fields = text.split(" ") if text else []
    if len(fields) != 5:
        raise CronError(
            f"a cron expression has 5 fields (minute hour day-of-month month day-of-week), e.g. '30 2 * * *'; "
            f"this one has {len(fields)}"
        )
    for index, (name, allowed) in enumerate(FIELDS):
        alone = ["*"] * 5
        alone[index] = fields[index]
        if not croniter.is_valid(" ".join(alone)):
            raise CronError(f"the {name} field '{fields[index]}' is not valid: it takes {allowed}, lists (1,5), ranges (1-5) and steps (*/15)")
    if not croniter.is_valid(text):
        raise CronError(f"'{text}' is not a valid cron expression")
    try:
        croniter(text, datetime.datetime(2000, 1, 1)).get_next(datetime.datetime)
    except Exception:  # noqa: BLE001 — croniter's "failed to find next date"
        raise CronError(f"'{text}' never comes due (no such date, e.g. 30 February)") from None
    return text


def check_timezone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(str(name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{name}' is not a time zone: use a name such as Europe/Berlin, America/New_York or UTC") from None


def describe(expression: str) -> str:
    """The expression in words: 'At 02:30, Monday through Friday'."""
    options = Options()
    options.use_24hour_time_format = True
    options.casing_type = CasingTypeEnum.Sentence
    try:
        return ExpressionDescriptor(check_cron(expression), options).get_description()
    except Exception:  # noqa: BLE001 — the words are a help, never a reason to fail
        return ""


def _instant(naive: datetime.datetime, zone: zoneinfo.ZoneInfo) -> datetime.datetime:
    """A wall-clock time in `zone` as one UTC instant: fold=0 takes the first of a time the
    clocks pass twice, and puts a time they skip the gap's length later."""
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)


def slots(expression: str, zone: zoneinfo.ZoneInfo, after: datetime.datetime, until=None, limit=5) -> list:
    """The slots (UTC) strictly after `after` and at most `until`, at most `limit` of them."""
    cursor = croniter(expression, after.astimezone(zone).replace(tzinfo=None))
    found = []
    while len(found) < limit:
        moment = _instant(cursor.get_next(datetime.datetime), zone)
        if until is not None and moment > until:
            break
        if moment > after and (not found or moment > found[-1]):
            found.append(moment)
    return found


def latest_slot(expression: str, zone: zoneinfo.ZoneInfo, until: datetime.datetime, after: datetime.datetime):
    """The last slot (UTC) at or before `until` and after `after`, or None: the last of
    `slots(expression, zone, after, until)`, DST read the same way (fold=0), found by stepping
    back with croniter from `until` however many slots lie between (an every-minute schedule
    has 10,080 a week)."""
    local = until.astimezone(zone)
    # The latest wall-clock time that can be a slot at or before `until`: `until`'s own, or in
    # the hour the clocks pass twice, on the second pass, the same time an offset's change later
    # (01:10 the second time: the first pass's 01:59 came before it, and fold=0 takes that one).
    start = local.replace(tzinfo=None) + (local.replace(fold=0).utcoffset() - local.utcoffset())
    cursor = croniter(expression, start + datetime.timedelta(seconds=1))  # get_prev is strictly before
    for _ in range(MAX_STEPS_BACK):
        moment = _instant(cursor.get_prev(datetime.datetime), zone)
        if moment <= until:
            return moment if moment > after else None
    return None


def next_slots(schedule: Schedule, count=5, after=None) -> list:
    zone = check_timezone(schedule.timezone)
    return slots(schedule.cron, zone, after or timezone.now(), limit=count)


def slot_value(schedule: Schedule, slot: datetime.datetime):
    """What the schedule's slot parameter receives: a date parameter the slot's date in the
    schedule's zone, a text parameter its time (ISO 8601 with the offset)."""
    local = slot.astimezone(check_timezone(schedule.timezone))
    pipe = registry.get(schedule.pipeline_name)
    spec = next((s for s in pipe.param_specs if s.name == schedule.slot_param), None) if pipe else None
    if spec is not None and spec.type is datetime.date:
        return local.date().isoformat()
    return local.isoformat()


def is_paused(pipeline_name: str) -> bool:
    return PipelineState.objects.filter(pipeline_name=pipeline_name, paused=True).exists()


# --- the tick ------------------------------------------------------------------------------


def tick(now=None) -> list[ScheduledSlot]:
    """Handle every slot that came due; returns the slot rows written."""
    now = now or timezone.now()
    paused = set(PipelineState.objects.filter(paused=True).values_list("pipeline_name", flat=True))
    written = []
    for schedule in Schedule.objects.filter(enabled=True).select_related("parameter_set"):
        try:
            row = _handle(schedule, now, schedule.pipeline_name in paused)
        except Exception:
            log.exception("schedule %s: its due slot could not be handled; the next tick tries again", schedule.pk)
            continue
        if row is not None:
            written.append(row)
    written.extend(_start_waiting())
    return written


def _handle(schedule: Schedule, now, paused: bool) -> ScheduledSlot | None:
    zone = check_timezone(schedule.timezone)
    after = schedule.last_slot or schedule.created_at
    due = slots(schedule.cron, zone, after, until=now, limit=MAX_MISSED + 1)
    if not due:
        return None
    slot, missed = due[-1], len(due) - 1
    with transaction.atomic():
        # Of any number of tickers, one moves last_slot from what it read: that one goes on.
        claimed = Schedule.objects.filter(pk=schedule.pk, last_slot=schedule.last_slot).update(last_slot=slot)
        if not claimed:
            return None
        if paused:
            return _slot(schedule, slot, missed, SlotOutcome.PAUSED, "the pipeline is paused")
        busy = Run.objects.filter(scheduled_slot__schedule=schedule, status__in=UNFINISHED).exists()
        if busy and schedule.overlap == Overlap.SKIP:
            return _slot(schedule, slot, missed, SlotOutcome.SKIPPED, "the previous scheduled run was still going")
        if busy and schedule.overlap == Overlap.QUEUE:
            return _slot(schedule, slot, missed, SlotOutcome.WAITING, "waits for the previous scheduled run")
        row = _slot(schedule, slot, missed, SlotOutcome.STARTED)
        if row is not None:
            _start(schedule, row)
        return row


def _slot(schedule, slot, missed, outcome, message="") -> ScheduledSlot | None:
    try:
        with transaction.atomic():
            return ScheduledSlot.objects.create(schedule=schedule, slot=slot, missed=missed, outcome=outcome, message=message)
    except IntegrityError:
        return None  # this slot was handled already (a second scheduler): never twice


def run_params(schedule: Schedule, slot: datetime.datetime) -> tuple[dict, object]:
    """The parameters a run of `slot` gets, and the parameter set revision they come from."""
    revision = schedule.parameter_set.latest if schedule.parameter_set_id else None
    params = dict(revision.values) if revision else {}
    if schedule.slot_param:
        params[schedule.slot_param] = slot_value(schedule, slot)
    return params, revision


def _start(schedule: Schedule, row: ScheduledSlot):
    """Start the run of a slot row, with the schedule's tags; a slot whose run cannot start
    says why instead."""
    params, revision = run_params(schedule, row.slot)
    try:
        with transaction.atomic():
            run = tasks.start(engine.start_run(
                schedule.pipeline_name, params, source="schedule", parameter_revision=revision, tags=schedule.tags,
            ))
            row.run = run
            row.outcome = SlotOutcome.STARTED
            row.message = f"a catch-up: one run for the {row.missed + 1} slots due while nothing ran" if row.missed else ""
            row.save(update_fields=["run", "outcome", "message"])
            details = {
                "schedule": schedule.name, "slot": row.slot.isoformat(), "catch_up_for": row.missed + 1 if row.missed else 0,
                "params": run.params,
            }
            if schedule.tags:
                details["tags"] = run_tags.check(schedule.tags)
            audit.record(None, AuditAction.TRIGGER, run, username=f"schedule “{schedule.name}”", details=details)
    except (ParamError, engine.UnknownPipeline, run_tags.TagError) as exc:
        why = f"pipeline {schedule.pipeline_name!r} is not defined" if isinstance(exc, engine.UnknownPipeline) else str(exc)
        ScheduledSlot.objects.filter(pk=row.pk).update(outcome=SlotOutcome.FAILED, message=f"could not start: {why}"[:300])
        log.error("schedule %s: the run of slot %s could not start: %s", schedule.pk, row.slot, why)


def _start_waiting() -> list[ScheduledSlot]:
    """Start the oldest waiting slot of each schedule whose previous run has finished."""
    started = []
    waiting = ScheduledSlot.objects.filter(outcome=SlotOutcome.WAITING).select_related("schedule__parameter_set")
    seen = set()
    for row in waiting.order_by("schedule_id", "slot"):
        if row.schedule_id in seen:
            continue
        seen.add(row.schedule_id)
        if Run.objects.filter(scheduled_slot__schedule_id=row.schedule_id, status__in=UNFINISHED).exists():
            continue
        with transaction.atomic():
            if ScheduledSlot.objects.filter(pk=row.pk, outcome=SlotOutcome.WAITING).update(outcome=SlotOutcome.STARTED):
                _start(row.schedule, row)
                started.append(row)
    return started
