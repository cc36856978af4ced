"""What an operator does to runs, from the dashboard or the JSON API: start, cancel, retry
from failure, re-run, mark a step by hand, write a run's note. Each is one transaction with
its audit event, so the two front ends cannot differ; the steps are queued once it commits.
A refusal raises ActionRefused (or SetRefused) with the sentence the operator reads."""

import functools

from django.db import transaction

from app.mlmodels import retrain
from app.models import AuditAction, ParameterSet, Run, StepRun
from app.runs import actions, audit, paramsets, tasks
from app.runs.actions import ActionRefused  # noqa: F401  (the refusal callers catch)


def start(pipeline_name: str, params: dict, user, *, parameter_set: ParameterSet | None = None,
          save_to_set=False, source="web", rerun_of: Run | None = None, tags=(), ignore_cache=False) -> Run:
    """A run of `params` (parsed by the pipeline) with `tags` (checked by app.runs.tags). It
    is recorded as a revision of `parameter_set` when it runs exactly what the set holds;
    `save_to_set` saves the values as the set's new revision when they differ. `rerun_of`:
    the run whose parameters the form was filled from (a re-run with edited parameters)."""
    with transaction.atomic():
        revision = paramsets.revision_for(parameter_set, params)
        if revision is None and parameter_set is not None and save_to_set:
            revision = paramsets.save_revision(parameter_set, params, user, note="saved from the run form")
        return paramsets.trigger(pipeline_name, params, user, revision, source=source, rerun_of=rerun_of, tags=tags,
                                 ignore_cache=ignore_cache)


def set_note(run: Run, note: str, user) -> bool:
    """Replace the run's note (empty clears it); False when it already said that.

    Audited as AuditAction.ADMIN_CHANGE with the text before and after (`field: note`): a
    note has no action of its own, since a new choice of AuditEvent.action needs a migration."""
    with transaction.atomic():
        before = Run.objects.select_for_update().values_list("note", flat=True).get(pk=run.pk)
        if before == note:
            return False
        Run.objects.filter(pk=run.pk).update(note=note)
        run.note = note
        audit.record(user, AuditAction.ADMIN_CHANGE, run,
                     details={"field": "note", "diff": {"changed": {"note": [before, note]}}})
    return True


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


def mark_step(step_run: StepRun, outcome: str, reason: str, user, *, expected: tuple[str, int]) -> actions.MarkPlan:
    """Set a step's outcome by hand (actions.mark_step), audited with the reason; the steps
    it made ready are queued once it commits (should the queue refuse them then, they stay
    queued and the watchdog queues them again)."""
    with transaction.atomic():
        plan, ready = actions.mark_step(step_run, outcome, reason, user, expected=expected)
        details = {"outcome": outcome, "reason": reason.strip(), "was": expected[0], "attempt": expected[1]}
        if plan.will_run:
            details["steps_that_run"] = plan.will_run
        if plan.skipped:
            details["steps_skipped"] = plan.skipped
        details["run_status_after"] = plan.run_after
        audit.record(user, AuditAction.STEP_MARK, step_run, pipeline_name=step_run.run.pipeline_name, details=details)
        transaction.on_commit(functools.partial(tasks.enqueue, ready), robust=True)
    return plan
