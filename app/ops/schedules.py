"""What operators do to schedules and pipelines from the dashboard, each audited: create,
edit, turn on or off, delete a schedule; pause and resume a pipeline."""

from django.db import transaction
from django.utils import timezone

from app.models import AuditAction, PipelineState, Schedule
from app.runs import audit

SHOWN = ["name", "cron", "timezone", "parameter_set", "slot_param", "overlap", "tags", "enabled"]


def values(schedule: Schedule) -> dict:
    """What the audit trail keeps of a schedule."""
    shown = {field: getattr(schedule, field) for field in SHOWN}
    shown["parameter_set"] = schedule.parameter_set.name if schedule.parameter_set_id else ""
    shown["tags"] = list(schedule.tags)
    return shown


def create(schedule: Schedule, pipeline_name: str, user) -> Schedule:
    """Save a new schedule (from its form): its first slot is the first one after now."""
    with transaction.atomic():
        schedule.pipeline_name = pipeline_name
        schedule.created_by = user
        schedule.last_slot = timezone.now()
        schedule.save()
        audit.record(user, AuditAction.SCHEDULE_CREATE, schedule, details=values(schedule))
    return schedule


def save(schedule: Schedule, before: dict, user) -> dict:
    """Save an edited schedule; returns what changed. A new expression or time zone starts
    from now: slots the old one would not have had are not caught up."""
    with transaction.atomic():
        after = values(schedule)
        changes = {field: [before[field], after[field]] for field in SHOWN if before[field] != after[field]}
        if not changes:
            return {}
        if "cron" in changes or "timezone" in changes or ("enabled" in changes and schedule.enabled):
            schedule.last_slot = timezone.now()
        schedule.save()
        audit.record(user, AuditAction.SCHEDULE_EDIT, schedule, details={"changes": changes})
    return changes


def set_enabled(schedule: Schedule, enabled: bool, user):
    """Turn a schedule on (from the next slot after now: the slots while it was off are not
    caught up) or off."""
    with transaction.atomic():
        fields = {"enabled": enabled, "updated_at": timezone.now()}
        if enabled:
            fields["last_slot"] = timezone.now()
        if not Schedule.objects.filter(pk=schedule.pk, enabled=not enabled).update(**fields):
            return False
        audit.record(user, AuditAction.SCHEDULE_ON if enabled else AuditAction.SCHEDULE_OFF, schedule)
    return True


def delete(schedule: Schedule, user):
    with transaction.atomic():
        audit.record(user, AuditAction.SCHEDULE_DELETE, schedule, details=values(schedule))
        schedule.delete()


def set_paused(pipeline_name: str, paused: bool, user, reason: str = "") -> bool:
    """Pause a pipeline (its schedules start nothing; manual runs still start) or resume it.
    False when it already was so."""
    with transaction.atomic():
        state, _created = PipelineState.objects.select_for_update().get_or_create(pipeline_name=pipeline_name)
        if state.paused == paused:
            return False
        state.paused, state.reason = paused, reason if paused else ""
        state.changed_by, state.changed_at = user, timezone.now()
        state.save()
        audit.record(user, AuditAction.PIPELINE_PAUSE if paused else AuditAction.PIPELINE_RESUME,
                     pipeline_name=pipeline_name, details={"reason": reason} if paused else {})
    return True


def paused_pipelines() -> dict[str, PipelineState]:
    return {state.pipeline_name: state for state in PipelineState.objects.filter(paused=True)}
