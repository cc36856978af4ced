"""Parameter sets: named, revisioned parameter values of a pipeline, kept valid against its code.

Every change is a new ParameterSetRevision and an audit event, in one transaction.
"""

from django.db import IntegrityError, transaction
from django.utils import timezone

from app import audit
from app.models import AuditAction, ParameterSet, ParameterSetRevision
from app.registry import ParamError, registry


class SetRefused(Exception):
    """The change does not apply; the message says why."""


def diff(old: dict, new: dict) -> dict:
    """What changed from `old` to `new`: added, removed and changed (old, new) values."""
    return {
        "added": {k: new[k] for k in sorted(new.keys() - old.keys())},
        "removed": {k: old[k] for k in sorted(old.keys() - new.keys())},
        "changed": {k: [old[k], new[k]] for k in sorted(old.keys() & new.keys()) if old[k] != new[k]},
    }


def problems(parameter_set: ParameterSet) -> dict[str, str]:
    """Why the set's latest values would not start a run with the current code ({} if they would)."""
    pipe = registry.get(parameter_set.pipeline_name)
    if pipe is None:
        return {"": f"pipeline “{parameter_set.pipeline_name}” is not available"}
    latest = parameter_set.latest
    try:
        pipe.parse_params(latest.values if latest else {})
    except ParamError as exc:
        return exc.errors
    return {}


def history(parameter_set: ParameterSet) -> list[tuple[ParameterSetRevision, dict]]:
    """Revisions newest first, each with its diff from the one before it."""
    revisions = list(parameter_set.revisions.select_related("created_by").order_by("number"))
    result, previous = [], {}
    for revision in revisions:
        result.append((revision, diff(previous, revision.values)))
        previous = revision.values
    return result[::-1]


def create(pipeline_name: str, name: str, values: dict, user, note="") -> ParameterSet:
    """A new set with its first revision. `values` must already be valid (ParamsForm)."""
    try:
        with transaction.atomic():
            parameter_set = ParameterSet.objects.create(pipeline_name=pipeline_name, name=name, created_by=user)
            ParameterSetRevision.objects.create(
                parameter_set=parameter_set, number=1, values=values, note=note, created_by=user
            )
            audit.record(user, AuditAction.PARAMSET_CREATE, parameter_set, details={"params": values})
    except IntegrityError:
        raise SetRefused(f"{pipeline_name} already has a parameter set named “{name}”.") from None
    return parameter_set


def save_revision(parameter_set: ParameterSet, values: dict, user, note="") -> ParameterSetRevision:
    """Save `values` as the set's next revision, unless they equal the latest one."""
    with transaction.atomic():
        latest = ParameterSet.objects.select_for_update().get(pk=parameter_set.pk).latest
        changes = diff(latest.values, values)
        if not any(changes.values()):
            raise SetRefused(f"Nothing changed: revision {latest.number} already has these values.")
        revision = ParameterSetRevision.objects.create(
            parameter_set=parameter_set, number=latest.number + 1, values=values, note=note, created_by=user
        )
        audit.record(user, AuditAction.PARAMSET_EDIT, parameter_set, details={"revision": revision.number, "diff": changes})
    return revision


def copy(parameter_set: ParameterSet, name: str, user) -> ParameterSet:
    """A new set starting from this set's latest values."""
    return create(parameter_set.pipeline_name, name, parameter_set.latest.values, user, note=f"copied from “{parameter_set.name}”")


def archive(parameter_set: ParameterSet, user, archived=True):
    """Hide a set from the run form (or bring it back); a default set cannot be archived."""
    if archived and parameter_set.is_default:
        raise SetRefused("The default set cannot be archived; make another set the default first.")
    with transaction.atomic():
        ParameterSet.objects.filter(pk=parameter_set.pk).update(archived_at=timezone.now() if archived else None)
        audit.record(user, AuditAction.PARAMSET_ARCHIVE, parameter_set, details={"archived": archived})


def make_default(parameter_set: ParameterSet, user):
    """Make this the pipeline's default set (the one "Run with the default set" uses)."""
    if parameter_set.archived_at:
        raise SetRefused("An archived set cannot be the default; restore it first.")
    with transaction.atomic():
        ParameterSet.objects.filter(pipeline_name=parameter_set.pipeline_name, is_default=True).update(is_default=False)
        ParameterSet.objects.filter(pk=parameter_set.pk).update(is_default=True)
        audit.record(user, AuditAction.PARAMSET_DEFAULT, parameter_set)
