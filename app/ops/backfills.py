"""Backfills: every slot of a schedule in a past range, run at most K at a time.

Starting a backfill lists its slots (the schedule's expression and time zone, as the
scheduler reads them) and starts the first K; each scheduler tick (`advance`) starts more as
runs finish, under the backfill row's lock, so however many ticks and pages act at once no
more than K run and no slot starts twice. Each run gets the schedule's parameters with the
slot in its slot parameter, and the schedule's tags, like a scheduled run. Cancelling stops the waiting slots and
cancels the running runs; retrying gives each failed slot a fresh run, in its turn.
"""

import datetime

from django.db import transaction
from django.utils import timezone

from app.models import FINISHED, UNFINISHED, AuditAction, Backfill, BackfillSlot, Run, Schedule, Status
from app.ops import scheduler
from app.pipelines.params import ParamError
from app.runs import actions, audit, engine, tasks
from app.runs import tags as run_tags

MAX_SLOTS = 1000
FAILED = (Status.FAILED, Status.UPSTREAM_FAILED, Status.CANCELLED)


class BackfillError(ValueError):
    """Why a backfill cannot be made or changed, in words for the operator."""


def plan(schedule: Schedule, start: datetime.datetime, end: datetime.datetime, now=None) -> list:
    """The slots of `schedule` from `start` to `end` (both included), or BackfillError."""
    now = now or timezone.now()
    if end < start:
        raise BackfillError("the range ends before it starts")
    if end > now:
        raise BackfillError("a backfill runs past slots: end the range before now (the schedule runs what comes next)")
    zone = scheduler.check_timezone(schedule.timezone)
    found = scheduler.slots(schedule.cron, zone, start - datetime.timedelta(microseconds=1), until=end, limit=MAX_SLOTS + 1)
    if not found:
        raise BackfillError(f"“{schedule.name}” has no slot in that range ({scheduler.describe(schedule.cron).lower()})")
    if len(found) > MAX_SLOTS:
        raise BackfillError(f"that range has more than {MAX_SLOTS} slots of “{schedule.name}”: backfill a shorter one")
    return found


def start(schedule: Schedule, start: datetime.datetime, end: datetime.datetime, max_parallel: int, user) -> Backfill:
    found = plan(schedule, start, end)
    with transaction.atomic():
        backfill = Backfill.objects.create(schedule=schedule, start=start, end=end, max_parallel=max_parallel, created_by=user)
        BackfillSlot.objects.bulk_create(BackfillSlot(backfill=backfill, slot=slot) for slot in found)
        audit.record(user, AuditAction.BACKFILL_START, backfill, pipeline_name=schedule.pipeline_name, details={
            "schedule": schedule.name, "from": found[0].isoformat(), "to": found[-1].isoformat(),
            "slots": len(found), "max_parallel": max_parallel,
        })
    advance(backfill)
    return backfill


def advance(backfill: Backfill) -> int:
    """Start waiting slots while fewer than K runs of the backfill are unfinished; finish
    the backfill when nothing is left. Returns how many runs it started."""
    started = 0
    with transaction.atomic():
        backfill = Backfill.objects.select_for_update().get(pk=backfill.pk)  # no join: PostgreSQL locks no outer join
        if backfill.state != Backfill.State.RUNNING:
            return 0
        slots = backfill.slots.select_related("run")
        running = sum(1 for s in slots if s.run is not None and s.run.status in UNFINISHED)
        waiting = [s for s in slots if s.run is None and not s.cancelled]
        for row in waiting[: max(0, backfill.max_parallel - running)]:
            params, revision = scheduler.run_params(backfill.schedule, row.slot)
            try:
                with transaction.atomic():
                    row.run = tasks.start(engine.start_run(
                        backfill.schedule.pipeline_name, params, source="backfill", parameter_revision=revision,
                        tags=backfill.schedule.tags,
                    ))
                    row.save(update_fields=["run"])
                started += 1
            except (ParamError, engine.UnknownPipeline, run_tags.TagError) as exc:
                why = f"pipeline {backfill.pipeline_name!r} is not defined" if isinstance(exc, engine.UnknownPipeline) else str(exc)
                BackfillSlot.objects.filter(pk=row.pk).update(cancelled=True, message=f"could not start: {why}"[:300])
        if not started and running == 0 and not waiting:
            Backfill.objects.filter(pk=backfill.pk).update(state=Backfill.State.DONE, finished_at=timezone.now())
    return started


def advance_all() -> int:
    """The scheduler's tick does this for every running backfill."""
    return sum(advance(backfill) for backfill in Backfill.objects.filter(state=Backfill.State.RUNNING))


def slot_states(backfill: Backfill) -> list[tuple[BackfillSlot, str]]:
    """Each slot with its state: done, running, failed, waiting or cancelled."""
    return [(row, state_of(row)) for row in backfill.slots.select_related("run")]


def progress(backfill: Backfill, rows=None) -> dict:
    """How many slots are in each state (from `rows` of slot_states when given: one walk)."""
    counts = {"done": 0, "running": 0, "failed": 0, "waiting": 0, "cancelled": 0}
    for _row, state in slot_states(backfill) if rows is None else rows:
        counts[state] += 1
    counts["total"] = sum(counts.values())
    return counts


def state_of(row: BackfillSlot) -> str:
    if row.run is None:
        return "cancelled" if row.cancelled else "waiting"
    if row.run.status == Status.SUCCEEDED:
        return "done"
    return "failed" if row.run.status in FAILED else "running"


def cancel(backfill: Backfill, user):
    with transaction.atomic():
        if not Backfill.objects.filter(pk=backfill.pk, state=Backfill.State.RUNNING).update(
            state=Backfill.State.CANCELLED, finished_at=timezone.now()
        ):
            raise BackfillError(f"backfill #{backfill.pk} is not running any more")
        skipped = backfill.slots.filter(run__isnull=True, cancelled=False).update(cancelled=True, message="the backfill was cancelled")
        stopped = 0
        for run in Run.objects.filter(pk__in=backfill.slots.values("run"), status__in=UNFINISHED):
            try:
                actions.cancel(run, user)
                stopped += 1
            except actions.ActionRefused:
                pass  # it finished meanwhile
        audit.record(user, AuditAction.BACKFILL_CANCEL, backfill, pipeline_name=backfill.pipeline_name,
                     details={"slots_not_started": skipped, "runs_cancelled": stopped})


def retry_failed(backfill: Backfill, user) -> int:
    """Give every failed slot a fresh run, in its turn (at most K at a time as before)."""
    with transaction.atomic():
        backfill = Backfill.objects.select_for_update().get(pk=backfill.pk)
        failed = [row for row in backfill.slots.select_related("run") if state_of(row) == "failed"]
        if not failed:
            raise BackfillError("no slot of this backfill has failed")
        if any(row.run.status not in FINISHED for row in failed):
            raise BackfillError("a failed slot's run is still finishing; try again in a moment")
        for row in failed:
            BackfillSlot.objects.filter(pk=row.pk).update(run=None, cancelled=False, message=f"again: run #{row.run_id} failed")
        Backfill.objects.filter(pk=backfill.pk).update(state=Backfill.State.RUNNING, finished_at=None)
        audit.record(user, AuditAction.BACKFILL_RETRY, backfill, pipeline_name=backfill.schedule.pipeline_name,
                     details={"slots": len(failed), "failed_runs": [row.run_id for row in failed]})
    advance(backfill)
    return len(failed)
