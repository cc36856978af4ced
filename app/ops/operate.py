"""What an operator does to runs, from the dashboard or the JSON API: start, cancel, retry
from failure, re-run. Each is one transaction with its audit event, so the two front ends
cannot differ; the steps are queued once it commits. A refusal raises ActionRefused (or
SetRefused) with the sentence the operator reads."""

from django.db import transaction

from app.mlmodels import retrain
from app.models import AuditAction, ParameterSet, Run
from app.runs import actions, audit, paramsets, tasks
from app.runs.actions import ActionRefused  # noqa: F401  (the refusal callers catch)


def start(pipeline_name: str, params: dict, user, *, parameter_set: ParameterSet | None = None,
          save_to_set=False, source="web", rerun_of: Run | None = None) -> Run:
    """A run of `params` (parsed by the pipeline). It is recorded as a revision of
    `parameter_set` when it runs exactly what the set holds; `save_to_set` saves the values
    as the set's new revision when they differ. `rerun_of`: the run whose parameters the
    form was filled from (a re-run with edited parameters)."""
    with transaction.atomic():
        revision = paramsets.revision_for(parameter_set, params)
        if revision is None and parameter_set is not None and save_to_set:
            revision = paramsets.save_revision(parameter_set, params, user, note="saved from the run form")
        return paramsets.trigger(pipeline_name, params, user, revision, source=source, rerun_of=rerun_of)


def cancel(run: Run, user) -> Run:
    with transaction.atomic():
        run = actions.cancel(run, user)
        audit.record(user, AuditAction.CANCEL, run)
    return run


def retry(run: Run, user) -> Run:
    """A new run that re-runs what failed in `run` and reuses the rest (see actions)."""
    with transaction.atomic():
        new = tasks.start(actions.retry_from_failure(run, user))
        retrain.carry_over(run, new)
        again, reused = actions.retry_plan(run)
        audit.record(user, AuditAction.RETRY, new, details={"retry_of": run.pk, "rerun_steps": again, "reused_steps": reused})
    return new


def rerun(run: Run, user) -> Run:
    """A fresh run of the same pipeline with the same parameters."""
    with transaction.atomic():
        new = tasks.start(actions.rerun(run, user))
        retrain.carry_over(run, new)
        audit.record(user, AuditAction.RERUN, new, details={"rerun_of": run.pk, "params": new.params})
    return new
