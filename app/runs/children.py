"""Sub-pipelines (`@p.subpipeline("name")`): a step that runs another pipeline as a child run.

The step's function runs like any step's (in a step process, with its inputs) and returns the
child's parameters. Recording that success starts the child run instead (`start`, in one
transaction with the step becoming `awaiting`): the step holds no worker thread while the
child runs, so a worker with one thread runs parent and child without deadlock — the trap of
a step that starts a run and waits for it. When the child run closes, `resume` (called from
the `run_finished` signal, in the transaction that closes it) finishes the parent step: it
succeeds with the child's result (the output of its last step; a dict by step name when it
has several), or fails naming the child run and what failed there; then the parent run goes
on as after any step. The child run points at the step (`Run.parent_step`); its pages link
both ways. Cancelling the parent run cancels its child runs.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from app import artifacts
from app.models import Run, Status, StepRun
from app.pipelines import graph as dag
from app.runs import engine, mapping, statements
from app.runs import tags as run_tags

log = logging.getLogger(__name__)


def start(step_run: StepRun, child: str, output: tuple, log_text: str) -> engine.Ready:
    """The step's function returned the child's parameters (saved as `output`): start the
    child run and leave the step awaiting it; returns the child's first steps. A child that
    cannot start (unknown pipeline, bad parameters) fails this attempt, saying why."""
    path, inline = output[:2]
    try:
        params = artifacts.load_output(path, inline) if path or inline is not None else None
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ValueError(
                f"a sub-pipeline step returns the child's parameters as a dict (or None), not a "
                f"{type(params).__module__}.{type(params).__qualname__}"
            )
        with transaction.atomic():
            tags = run_tags.names_of(Run.objects.get(pk=step_run.run_id))
            run, ready = engine.start_run(child, params, source="parent", tags=tags, parent_step=step_run.pk)
            if not StepRun.objects.filter(pk=step_run.pk, status=Status.RUNNING, attempt=step_run.attempt).update(
                status=Status.AWAITING, log=log_text, heartbeat_at=None, error="", output_path="", output_inline=None,
            ):
                transaction.set_rollback(True)  # this attempt was taken back meanwhile: no child for it
                return engine.Ready()
    except (engine.UnknownPipeline, engine.ParamError, ValueError) as exc:
        return engine.fail_attempt(step_run, log_text, f"could not start the child run of {child!r}: {exc}")
    log.info("step run %s: child run %s of %s started", step_run.pk, run.pk, child)
    return engine.Ready(ready)


def result(child: Run):
    """A finished child run's result: the output of its last step, or a dict by step name
    of the outputs of its last steps (those nothing runs after) when it has several."""
    graph = dag.from_snapshot(child.snapshot.graph)
    sinks = [name for name in dag.topological_order(graph) if graph.out_degree(name) == 0]
    rows = mapping.upstream_rows(child.pk, sinks)
    mapped = {step["name"]: bool(step.get("map_over")) for step in child.snapshot.steps}
    values = {
        name: None if rows[name][1] == Status.SKIPPED else mapping.gathered(*rows[name][:1], *rows[name][2:], mapped[name])
        for name in sinks
    }
    return values[sinks[0]] if len(sinks) == 1 else values


def resume(child_id: int, status: str) -> engine.Ready:
    """The child run `child_id` closed with `status`: finish the step awaiting it (see the
    module's docstring); returns what became ready in the parent run. Inside the transaction
    that closes the child."""
    child = Run.objects.select_related("snapshot").filter(pk=child_id, parent_step__isnull=False).first()
    if child is None:
        return engine.Ready()
    parent = StepRun.objects.select_related("run__snapshot").get(pk=child.parent_step_id)
    if parent.status != Status.AWAITING:
        return engine.Ready()
    run = parent.run
    graph = engine.snapshot_dag(run.snapshot_id, run.snapshot.source_hash)
    now = timezone.now()
    if status == Status.SUCCEEDED:
        try:
            output = artifacts.save_output(run.pk, parent.step_name, result(child), parent.attempt,
                                           inline_max=settings.STEP_OUTPUT_INLINE_BYTES)
        except Exception as exc:  # noqa: BLE001 — the result could not be read or saved: the step fails
            return _fail(parent, graph, now, f"the result of child run #{child.pk} could not be saved: "
                                             f"{engine.supervisor.describe_exception(exc)}")
        StepRun.objects.filter(pk=parent.pk, status=Status.AWAITING).update(status=Status.RUNNING)
        parent.status = Status.RUNNING
        recorded = statements.record_success(parent, now, parent.log, output, list(graph.successors(parent.step_name)))
        if recorded is None:
            return engine.Ready()
        finished, total, queued, _claimed = recorded
        if finished >= total:
            statements.close_run(run.pk, now)
        return engine.Ready([pk for pk, _queue in queued], queues=dict(queued))
    failed = StepRun.objects.filter(run=child, status=Status.FAILED).exclude(error="").order_by("position").first()
    why = f": step {failed.step_name} failed: {failed.error}" if failed else ""
    return _fail(parent, graph, now, f"child run #{child.pk} of {child.pipeline_name} {Status(status).label}{why}")


def _fail(parent: StepRun, graph, now, error: str) -> engine.Ready:
    cancelled = Run.objects.filter(pk=parent.run_id, cancel_requested_at__isnull=False).exists()
    StepRun.objects.filter(pk=parent.pk, status=Status.AWAITING).update(
        status=Status.CANCELLED if cancelled else Status.FAILED, finished_at=now, error=error[:500],
    )
    if cancelled:
        statements.finish_steps(parent.run_id, 1, now)
    else:
        engine.fail_below(parent.run_id, graph, parent.step_name, now)
    return engine.Ready()


def children_of(run: Run):
    """The run's child runs (started by its sub-pipeline steps), oldest first."""
    return Run.objects.filter(parent_step__run=run).select_related("parent_step").order_by("pk")
