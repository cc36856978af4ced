"""What an operator can do to a run after it started: cancel, retry from failure, re-run.

Like the engine, these functions never enqueue: they return the step run ids that are ready,
and the caller (app.runs.tasks) enqueues them once the transaction has committed.
"""

from django.db import transaction
from django.utils import timezone

from app.models import FINISHED, UNFINISHED, Run, Status, StepRun
from app.pipelines import graph as dag
from app.pipelines.registry import DEFAULT_QUEUE, registry
from app.runs import engine, statements

RETRYABLE = (Status.FAILED, Status.CANCELLED)
RERUN_STEP_STATUSES = (Status.FAILED, Status.CANCELLED, Status.UPSTREAM_FAILED)


class ActionRefused(Exception):
    """The action does not apply to this run; the message says why."""


def cancel(run: Run, user) -> Run:
    """Stop a queued or running run: steps that have not started never will; a running step
    sees `ctx.cancel_requested` (or finishes, and nothing after it starts). The run ends
    `cancelled` once its running steps have stopped."""
    now = timezone.now()
    with transaction.atomic():
        asked = Run.objects.filter(pk=run.pk, status__in=UNFINISHED, cancel_requested_at__isnull=True).update(
            cancel_requested_at=now, cancelled_by=user
        )
        if not asked:
            run.refresh_from_db()
            if run.cancel_requested_at:
                raise ActionRefused(f"Run #{run.pk} is already being cancelled.")
            raise ActionRefused(f"Run #{run.pk} has already finished ({run.get_status_display()}).")
        stopped = StepRun.objects.filter(
            run=run, status__in=[Status.PENDING, Status.QUEUED, Status.RETRYING]
        ).update(status=Status.CANCELLED, finished_at=now, error="not started: the run was cancelled")
        statements.finish_steps(run.pk, stopped, now)
    run.refresh_from_db()
    return run


def retry_plan(run: Run) -> tuple[list[str], list[str]]:
    """(steps that will run again, steps whose saved outputs will be reused) for a retry
    from failure: everything failed, cancelled or skipped, and everything downstream of it."""
    graph = dag.from_snapshot(run.snapshot.graph)
    statuses = dict(run.step_runs.values_list("step_name", "status"))
    broken = [name for name, status in statuses.items() if status in RERUN_STEP_STATUSES]
    again = set(broken) | dag.downstream(graph, broken)
    order = dag.topological_order(graph)
    return [s for s in order if s in again], [s for s in order if s not in again]


def retry_from_failure(run: Run, user) -> tuple[Run, list[int]]:
    """A new attempt of a failed or cancelled run that re-runs only what did not succeed,
    reading the outputs of the rest from the artifact store. Runs the current code of the
    steps (a retry usually follows a fix), so the steps and their dependencies must not
    have changed."""
    if run.status not in RETRYABLE:
        raise ActionRefused(f"Only a failed or cancelled run can be retried; run #{run.pk} is {run.get_status_display()}.")
    pipe = registry.get(run.pipeline_name)
    if pipe is None:
        raise ActionRefused(f"Pipeline “{run.pipeline_name}” is not available any more, so its runs cannot be retried.")
    current = pipe.snapshot()
    if _shape(current) != _shape(run.snapshot.graph):
        raise ActionRefused(
            f"The steps of {run.pipeline_name} changed since run #{run.pk}, so its outputs cannot be reused; "
            "start a fresh run instead."
        )
    again, reused = retry_plan(run)
    first = run.retry_of or run
    previous = {sr.step_name: sr for sr in run.step_runs.all()}
    graph = dag.from_snapshot(current)
    queues = {step["name"]: step.get("queue") or DEFAULT_QUEUE for step in current["steps"]}
    now = timezone.now()
    with transaction.atomic():
        attempts = Run.objects.filter(retry_of=first).count() + 1
        new = Run.objects.create(
            snapshot=engine.snapshot_for(pipe),
            pipeline_name=run.pipeline_name,
            params=run.params,
            parameter_revision=run.parameter_revision,
            triggered_by=user,
            trigger_source="retry",
            retry_of=first,
            attempt=attempts + 1,
            steps_total=len(previous),
            steps_finished=len(reused),
        )
        rows = []
        for position, name in enumerate(dag.topological_order(graph)):
            if name in reused:
                old = previous[name]
                rows.append(StepRun(
                    run=new, step_name=name, position=position, status=Status.SUCCEEDED,
                    output_path=old.output_path, output_inline=old.output_inline, reused_from=old.reused_from or old,
                    queued_at=now, started_at=now, finished_at=now,
                ))
            else:
                left = sum(1 for pred in graph.predecessors(name) if pred not in reused)
                rows.append(StepRun(
                    run=new, step_name=name, position=position,
                    status=Status.PENDING if left else Status.QUEUED, queued_at=None if left else now,
                    upstream_left=left, queue=queues[name],
                ))
        StepRun.objects.bulk_create(rows)
        ready_ids = list(
            new.step_runs.filter(status=Status.QUEUED).order_by("position").values_list("pk", flat=True)
        )
    return new, ready_ids


def rerun(run: Run, user) -> tuple[Run, list[int]]:
    """A fresh run of the same pipeline with the same parameters (all steps run)."""
    if run.status not in FINISHED:
        raise ActionRefused(f"Run #{run.pk} has not finished yet; cancel it first or wait.")
    try:
        return engine.start_run(
            run.pipeline_name, run.params, user=user, source="rerun", parameter_revision=run.parameter_revision,
            rerun_of=run,
        )
    except engine.UnknownPipeline as exc:
        raise ActionRefused(str(exc)) from None
    except engine.ParamError as exc:
        raise ActionRefused(f"The parameters of run #{run.pk} are not valid for the current code: {exc}") from None


def _shape(snapshot_graph: dict):
    """What must stay the same for outputs to be reusable: the steps, their dependencies
    and the inputs each step takes."""
    return (
        sorted((s["name"], sorted(s["after"]), sorted(s["inputs"])) for s in snapshot_graph["steps"]),
        sorted(map(tuple, snapshot_graph["edges"])),
    )
