"""Parameter sets: named, revisioned parameter values of a pipeline, kept valid against its code.

Every change is a new ParameterSetRevision and an audit event, in one transaction. Values are
checked against the pipeline's current declaration (`Pipeline.parse_params`) on every save, and
a set whose latest values the code no longer accepts cannot start a run until it is saved again.
"""

from django.db import IntegrityError, transaction
from django.utils import timezone

from app.models import AuditAction, ParameterSet, ParameterSetRevision
from app.pipelines.registry import ParamError, registry
from app.runs import audit, tasks
from app.runs import tags as run_tags


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
    """Why the set's latest values would not start a run with the current code ({} if they
    would), by parameter name; "" names a problem of the whole set."""
    pipe = registry.get(parameter_set.pipeline_name)
    if pipe is None:
        return {"": f"pipeline “{parameter_set.pipeline_name}” is not available"}
    latest = parameter_set.latest
    try:
        pipe.parse_params(latest.values if latest else {})
    except ParamError as exc:
        return exc.errors
    return {}


def describe(problems: dict[str, str]) -> str:
    """The problems as one line, for a message."""
    return "; ".join(f"{name}: {reason}" if name else reason for name, reason in problems.items())


def history(parameter_set: ParameterSet) -> list[tuple[ParameterSetRevision, dict]]:
    """Revisions newest first, each with its diff from the one before it."""
    revisions = list(parameter_set.revisions.select_related("created_by").order_by("number"))
    result, previous = [], {}
    for revision in revisions:
        result.append((revision, diff(previous, revision.values)))
        previous = revision.values
    return result[::-1]


def _parse(pipeline_name: str, values: dict) -> dict:
    """The full, JSON-ready values the current code makes of `values`; ParamError if it rejects them."""
    pipe = registry.get(pipeline_name)
    if pipe is None:
        raise SetRefused(f"Pipeline “{pipeline_name}” is not available.")
    return pipe.parse_params(values)


def create(pipeline_name: str, name: str, values: dict, user, note="", *, details=None) -> ParameterSet:
    """A new set with its first revision. Raises ParamError when the declaration rejects
    `values`, SetRefused when the pipeline already has a set of that name."""
    name = name.strip()
    if not name:
        raise SetRefused("A parameter set needs a name.")
    values = _parse(pipeline_name, values)
    try:
        with transaction.atomic():
            parameter_set = ParameterSet.objects.create(pipeline_name=pipeline_name, name=name, created_by=user)
            ParameterSetRevision.objects.create(
                parameter_set=parameter_set, number=1, values=values, note=note, created_by=user
            )
            audit.record(
                user, AuditAction.PARAMSET_CREATE, parameter_set, details={"params": values, **(details or {})}
            )
    except IntegrityError:
        raise SetRefused(f"{pipeline_name} already has a parameter set named “{name}”.") from None
    return parameter_set


def changes_for(latest: ParameterSetRevision, values: dict) -> tuple[dict, dict]:
    """(the values as a new revision after `latest` would store them, their diff from it).
    Raises ParamError when the declaration rejects them, SetRefused when nothing changed."""
    values = _parse(latest.parameter_set.pipeline_name, values)
    changes = diff(latest.values, values)
    if not any(changes.values()):
        raise SetRefused(f"Nothing changed: revision {latest.number} already has these values.")
    return values, changes


def save_revision(parameter_set: ParameterSet, values: dict, user, note="") -> ParameterSetRevision:
    """Save `values` as the set's next revision (this is also how a set the code no longer
    accepts is fixed). Raises ParamError when the declaration rejects them, SetRefused when
    they equal the latest revision's."""
    with transaction.atomic():
        # The lock makes concurrent saves take turns for the next revision number.
        latest = ParameterSet.objects.select_for_update().get(pk=parameter_set.pk).latest
        values, changes = changes_for(latest, values)
        revision = ParameterSetRevision.objects.create(
            parameter_set=parameter_set, number=latest.number + 1, values=values, note=note, created_by=user
        )
        audit.record(
            user, AuditAction.PARAMSET_EDIT, parameter_set, details={"revision": revision.number, "diff": changes}
        )
    return revision


def copy(parameter_set: ParameterSet, name: str, user) -> ParameterSet:
    """A new set starting from this set's latest values (which must fit the current code)."""
    found = problems(parameter_set)
    if found:
        raise SetRefused(f"“{parameter_set.name}” does not fit the current code ({describe(found)}); edit it first.")
    latest = parameter_set.latest
    return create(
        parameter_set.pipeline_name, name, latest.values, user,
        note=f"copied from “{parameter_set.name}” r{latest.number}",
        details={"copied_from": parameter_set.name, "revision": latest.number},
    )


def archive(parameter_set: ParameterSet, user, archived=True):
    """Hide a set from the run form (or bring it back); a default set cannot be archived."""
    with transaction.atomic():
        if archived:
            # Conditional, so a set made the default meanwhile is never archived.
            changed = ParameterSet.objects.filter(pk=parameter_set.pk, archived_at=None, is_default=False).update(
                archived_at=timezone.now()
            )
        else:
            changed = ParameterSet.objects.filter(pk=parameter_set.pk, archived_at__isnull=False).update(archived_at=None)
        if not changed:
            parameter_set.refresh_from_db()
            if archived and parameter_set.is_default:
                raise SetRefused("The default set cannot be archived; make another set the default first.")
            raise SetRefused(f"“{parameter_set.name}” is {'already' if archived else 'not'} archived.")
        audit.record(user, AuditAction.PARAMSET_ARCHIVE, parameter_set, details={"archived": archived})
    parameter_set.refresh_from_db()


def make_default(parameter_set: ParameterSet, user):
    """Make this the pipeline's default set (the one "Run with the default set" uses)."""
    with transaction.atomic():
        current = ParameterSet.objects.select_for_update().get(pk=parameter_set.pk)
        if current.archived_at:
            raise SetRefused("An archived set cannot be the default; restore it first.")
        if current.is_default:
            raise SetRefused(f"“{current.name}” is already the default set.")
        previous = ParameterSet.objects.filter(pipeline_name=current.pipeline_name, is_default=True).first()
        # Unset first: the partial unique constraint allows one default per pipeline at any time.
        ParameterSet.objects.filter(pipeline_name=current.pipeline_name, is_default=True).update(is_default=False)
        ParameterSet.objects.filter(pk=current.pk).update(is_default=True)
        audit.record(
            user, AuditAction.PARAMSET_DEFAULT, current, details={"previous": previous.name if previous else None}
        )
    parameter_set.refresh_from_db()


def revision_for(parameter_set: ParameterSet | None, params: dict) -> ParameterSetRevision | None:
    """The set's latest revision if a run with `params` (full, parsed values) runs exactly
    what it holds, as the current code reads it; else None."""
    if parameter_set is None:
        return None
    latest = parameter_set.latest
    try:
        return latest if _parse(parameter_set.pipeline_name, latest.values) == params else None
    except (ParamError, SetRefused):
        return None


def trigger(pipeline_name: str, params: dict, user, revision: ParameterSetRevision | None = None, *, source="web",
            rerun_of=None, tags=(), ignore_cache=False):
    """Start a run (through tasks.trigger) and record it in the audit trail, naming the set
    revision its values came from and its tags. Call inside the transaction of any other
    change it needs."""
    with transaction.atomic():
        run = tasks.trigger(pipeline_name, params, user=user, source=source, parameter_revision=revision,
                            rerun_of=rerun_of, tags=tags, ignore_cache=ignore_cache)
        details = {"params": run.params}
        if ignore_cache:
            details["ignore_cache"] = True
        if tags:
            details["tags"] = run_tags.check(tags)
        if rerun_of is not None:
            details["rerun_of"] = rerun_of.pk
        if revision is not None:
            details.update(parameter_set=revision.parameter_set.name, revision=revision.number)
        audit.record(user, AuditAction.TRIGGER, run, details=details)
    return run


def run(parameter_set: ParameterSet, user):
    """Start a run with the set's latest revision; refused while the set is archived or its
    values do not fit the current code."""
    if parameter_set.archived_at:
        raise SetRefused(f"“{parameter_set.name}” is archived; restore it first.")
    found = problems(parameter_set)
    if found:
        raise SetRefused(f"“{parameter_set.name}” does not fit the current code ({describe(found)}); edit it first.")
    revision = parameter_set.latest
    return trigger(parameter_set.pipeline_name, revision.values, user, revision)
