"""What an operator can do to a run after it started: cancel, retry from failure, re-run,
and mark a step's outcome by hand.

Like the engine, these functions never enqueue: they return the step run ids that are ready,
and the caller (app.runs.tasks) enqueues them once the transaction has committed.
"""

import dataclasses
import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from app import artifacts
from app.models import FINISHED, UNFINISHED, Run, Status, StepRun
from app.pipelines import graph as dag
from app.pipelines.registry import DEFAULT_QUEUE, registry
from app.runs import engine, mapping, statements
from app.runs import tags as run_tags

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
        not_started = dict(status=Status.CANCELLED, finished_at=now, error="not started: the run was cancelled")
        waiting = [Status.PENDING, Status.QUEUED, Status.RETRYING]
        stopped = StepRun.objects.filter(run=run, status__in=waiting, map_of__isnull=True).update(**not_started)
        statements.finish_steps(run.pk, stopped, now)
        # A mapped step's items that have not started never will; the map closes when its
        # running items have stopped too.
        for node_id in StepRun.objects.filter(run=run, status=Status.AWAITING).values_list("pk", flat=True):
            count = StepRun.objects.filter(map_of_id=node_id, status__in=waiting).update(**not_started)
            if count:
                mapping.items_stopped(node_id, count, now)
    # Its child runs (sub-pipelines) stop too, each in a transaction of its own: a child
    # closing at this moment locks itself and then this run, never the other way round.
    for child in Run.objects.filter(parent_step__run=run, status__in=UNFINISHED, cancel_requested_at__isnull=True):
        try:
            cancel(child, user)
        except ActionRefused:
            pass  # it finished meanwhile
    run.refresh_from_db()
    return run


def retry_plan(run: Run) -> tuple[list[str], list[str]]:
    """(steps that will run again, steps whose saved outputs will be reused) for a retry
    from failure: everything failed, cancelled or skipped, and everything downstream of it."""
    graph = dag.from_snapshot(run.snapshot.graph)
    statuses = dict(run.step_runs.filter(map_of__isnull=True).values_list("step_name", "status"))
    broken = [name for name, status in statuses.items() if status in RERUN_STEP_STATUSES]
    again = set(broken) | dag.downstream(graph, broken)
    order = dag.topological_order(graph)
    return [s for s in order if s in again], [s for s in order if s not in again]


def retry_from_failure(run: Run, user) -> tuple[Run, list[int]]:
    """A new attempt of a failed or cancelled run that re-runs only what did not succeed,
    reading the outputs of the rest from the artifact store. Runs the current code of the
    steps (a retry usually follows a fix), so the steps and their dependencies must not
    have changed. The new run has the tags of `run`."""
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
    previous = {sr.step_name: sr for sr in run.step_runs.filter(map_of__isnull=True)}
    # A mapped step whose upstream is reused keeps its items: only the failed ones run again.
    old_graph = dag.from_snapshot(run.snapshot.graph)
    kept_maps = {
        name for name in again
        if (run.snapshot.step(name) or {}).get("map_over") and previous[name].items_total
        and all(up in reused for up in old_graph.predecessors(name))
    }
    graph = dag.from_snapshot(current)
    queues = {step["name"]: step.get("queue") or DEFAULT_QUEUE for step in current["steps"]}
    pools = {step["name"]: step.get("pool", "") for step in current["steps"]}
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
        run_tags.save_new(new, run_tags.names_of(run))
        rows = []
        for position, name in enumerate(dag.topological_order(graph)):
            if name in reused:
                old = previous[name]
                rows.append(StepRun(
                    run=new, step_name=name, position=position,
                    status=Status.SKIPPED if old.status == Status.SKIPPED else Status.SUCCEEDED, error=old.error,
                    output_path=old.output_path, output_inline=old.output_inline, reused_from=old.reused_from or old,
                    queued_at=now, started_at=now, finished_at=now, items_total=old.items_total,
                ))
            else:
                left = sum(1 for pred in graph.predecessors(name) if pred not in reused)
                rows.append(StepRun(
                    run=new, step_name=name, position=position,
                    status=Status.PENDING if left else Status.QUEUED, queued_at=None if left else now,
                    upstream_left=left, queue=queues[name], pool=pools[name],
                    upstream_skipped=sum(
                        1 for pred in graph.predecessors(name)
                        if pred in reused and previous[pred].status == Status.SKIPPED
                    ),
                ))
        StepRun.objects.bulk_create(rows)
        for name in kept_maps:
            _keep_items(previous[name], new, now)
        ready_ids = list(
            new.step_runs.filter(status=Status.QUEUED).order_by("position").values_list("pk", flat=True)
        )
    return new, ready_ids


def _keep_items(old: StepRun, new: Run, now):
    """The mapped step `old` of a retried run, in the retry `new`: its items that succeeded
    are reused, the others queued again with their inputs; the step awaits them."""
    items = list(old.items.order_by("map_index"))
    again = [item for item in items if item.status != Status.SUCCEEDED]
    node = StepRun.objects.get(run=new, step_name=old.step_name)
    StepRun.objects.filter(pk=node.pk).update(
        status=Status.AWAITING, attempt=1, queued_at=now, started_at=now, upstream_left=0,
        items_total=len(items), items_left=len(again), items_failed=0,
        output_path=old.output_path, output_inline=old.output_inline,
    )
    StepRun.objects.bulk_create(
        [
            StepRun(
                run=new, step_name=item.step_name, position=node.position, map_of=node, map_index=item.map_index,
                queue=node.queue, pool=node.pool, input_path=item.input_path, input_inline=item.input_inline,
                **({"status": Status.SUCCEEDED, "output_path": item.output_path, "output_inline": item.output_inline,
                    "reused_from": item.reused_from or item, "queued_at": now, "started_at": now, "finished_at": now}
                   if item.status == Status.SUCCEEDED else {"status": Status.QUEUED, "queued_at": now}),
            )
            for item in items
        ],
        batch_size=500,
    )


def rerun(run: Run, user) -> tuple[Run, list[int]]:
    """A fresh run of the same pipeline with the same parameters and tags (all steps run)."""
    if run.status not in FINISHED:
        raise ActionRefused(f"Run #{run.pk} has not finished yet; cancel it first or wait.")
    try:
        return engine.start_run(
            run.pipeline_name, run.params, user=user, source="rerun", parameter_revision=run.parameter_revision,
            rerun_of=run, tags=run_tags.names_of(run),
        )
    except engine.UnknownPipeline as exc:
        raise ActionRefused(str(exc)) from None
    except engine.ParamError as exc:
        raise ActionRefused(f"The parameters of run #{run.pk} are not valid for the current code: {exc}") from None


def _shape(snapshot_graph: dict):
    """What must stay the same for outputs to be reusable: the steps, their dependencies,
    the inputs each step takes and its named outputs."""
    return (
        sorted(
            (s["name"], sorted(s["after"]), sorted(s["inputs"]), s.get("outputs", [])) for s in snapshot_graph["steps"]
        ),
        sorted(map(tuple, snapshot_graph["edges"])),
    )


# --- marking a step's outcome by hand (Airflow's "mark success / mark failed") ---------------

MARK_OUTCOMES = (Status.SUCCEEDED, Status.FAILED)
# What keeps a step below from running: a step above it that did not succeed and never will.
BROKEN = (Status.FAILED, Status.UPSTREAM_FAILED, Status.CANCELLED)
# What lets a step below go on: an upstream step that succeeded, or was skipped (the step
# below then decides whether it runs: app.runs.mapping.load_inputs).
DONE = (Status.SUCCEEDED, Status.SKIPPED)


def is_stuck(step_run: StepRun, now=None) -> bool:
    """Running without a live heartbeat (not marked alive for STEP_LOST_AFTER_SECONDS, as the
    watchdog judges it), or queued: waiting for a worker that may never come."""
    if step_run.status == Status.QUEUED:
        return True
    return step_run.status == Status.RUNNING and (
        step_run.heartbeat_at is None or step_run.heartbeat_at < _alive_since(now or timezone.now())
    )


def _alive_since(now):
    return now - datetime.timedelta(seconds=settings.STEP_LOST_AFTER_SECONDS)


def mark_outcomes(step_run: StepRun, run: Run, now=None) -> list[str]:
    """The outcomes an operator may give this step by hand: succeeded for a failed,
    upstream-failed or stuck step, failed for a stuck one; [] when none applies."""
    return [outcome for outcome in MARK_OUTCOMES if mark_refusal(step_run, run, outcome, now) is None]


def mark_refusal(step_run: StepRun, run: Run, outcome: str, now=None) -> str | None:
    """Why this step cannot be marked `outcome` by hand now, as the operator reads it; None
    when it can."""
    name = step_run.step_name
    if run.cancel_requested_at:
        return f"Run #{run.pk} was cancelled: its steps cannot be marked by hand. Retry it from failure instead."
    if mapping.is_item(step_run) or (run.snapshot.step(step_run.node_name) or {}).get("map_over"):
        return (
            f"Step {name} is {'an item of ' if mapping.is_item(step_run) else ''}a mapped step: it cannot be marked "
            "by hand. Retry the run from failure: its failed items run again."
        )
    if outcome not in MARK_OUTCOMES:
        return f"A step can be marked succeeded or failed, not {outcome!r}."
    if step_run.status in (Status.FAILED, Status.UPSTREAM_FAILED):
        if outcome == Status.FAILED:
            return f"Step {name} is {step_run.get_status_display()} already: it can only be marked succeeded."
        return None
    if step_run.status == Status.RUNNING and not is_stuck(step_run, now):
        return (
            f"Step {name} is running and its worker marked it alive less than {settings.STEP_LOST_AFTER_SECONDS:g} s "
            "ago. Wait until it finishes, or is stuck (no sign of life for that long), or cancel the run."
        )
    if is_stuck(step_run, now):
        return None
    return (
        f"Step {name} is {step_run.get_status_display()}: only a failed, upstream-failed or stuck (queued, or "
        "running with no sign of life) step can be marked by hand."
    )


@dataclasses.dataclass
class MarkPlan:
    """What marking one step by hand does, decided from the statuses of the run's steps
    (`mark_plan`): the same rule for the confirmation page and the change itself."""

    step: str
    outcome: str
    after: dict  # step name → its status afterwards, for the steps that change (this one too)
    upstream_left: dict  # step name → upstream steps not succeeded, for those waiting or queued
    will_run: list  # below the step, in the run's order: run now or once the steps above them have
    run_now: list  # of will_run, those queued at once
    stay_blocked: list  # below the step, still upstream failed: another step above them did not succeed
    blocked_by: list  # the failed steps that keep stay_blocked from running
    skipped: list  # marked failed: the steps below it that become upstream failed
    dependants: list  # the steps right below it
    receive_none: list  # of those, the ones that take its output as an input
    has_output: bool
    run_after: str  # the run's status afterwards: running, succeeded or failed
    reopens_run: bool  # the run had finished and runs again


def mark_plan(run: Run, statuses: dict, step: str, outcome: str, has_output: bool = False) -> MarkPlan:
    """What marking `step` of `run` as `outcome` does, given every step's status
    (`statuses`: name → status). Marked succeeded, the steps below it that were upstream
    failed wait again unless another step above them did not succeed either, and those
    whose upstream steps have all succeeded are queued; marked failed, the steps below it
    still waiting become upstream failed."""
    graph = dag.from_snapshot(run.snapshot.graph)
    order = dag.topological_order(graph)
    below = dag.downstream(graph, [step])
    after = dict(statuses)
    after[step] = outcome
    for name in order:
        if name not in below:
            continue
        if outcome == Status.SUCCEEDED and after[name] in (Status.UPSTREAM_FAILED, Status.PENDING):
            if not any(after[up] in BROKEN for up in graph.predecessors(name)):
                waiting = [up for up in graph.predecessors(name) if after[up] not in DONE]
                after[name] = Status.PENDING if waiting else Status.QUEUED
        elif outcome == Status.FAILED and after[name] == Status.PENDING:
            after[name] = Status.UPSTREAM_FAILED
    waits = [name for name in order if name in below and after[name] in (Status.PENDING, Status.QUEUED)]
    stay_blocked = [name for name in order if name in below and after[name] == Status.UPSTREAM_FAILED]
    above_blocked = set().union(*(dag.upstream(graph, [name]) for name in stay_blocked))
    blocked_by = [name for name in order if name in above_blocked and after[name] in (Status.FAILED, Status.CANCELLED)]
    inputs = {s["name"]: s.get("inputs", []) for s in run.snapshot.steps}
    unfinished = any(status in UNFINISHED for status in after.values())
    if unfinished:
        run_after = Status.RUNNING
    elif any(status in BROKEN for status in after.values()):
        run_after = Status.FAILED
    else:
        run_after = Status.SUCCEEDED
    return MarkPlan(
        step=step,
        outcome=outcome,
        after={name: status for name, status in after.items() if status != statuses[name]},
        upstream_left={
            name: sum(1 for up in graph.predecessors(name) if after[up] not in DONE) for name in waits
        },
        will_run=waits if outcome == Status.SUCCEEDED else [],
        run_now=[name for name in waits if after[name] == Status.QUEUED],
        stay_blocked=stay_blocked if outcome == Status.SUCCEEDED else [],
        blocked_by=blocked_by if outcome == Status.SUCCEEDED else [],
        skipped=[name for name in order if name in below and statuses[name] != after[name]]
        if outcome == Status.FAILED else [],
        dependants=[name for name in order if name in set(graph.successors(step))],
        receive_none=[name for name in order if name in set(graph.successors(step)) and step in inputs.get(name, [])],
        has_output=has_output,
        run_after=run_after,
        reopens_run=run.status in FINISHED and run_after == Status.RUNNING,
    )


def plan_for(step_run: StepRun, outcome: str) -> MarkPlan:
    """The plan of marking this step `outcome`, from its run's statuses now (the page)."""
    run = step_run.run
    statuses = dict(run.step_runs.filter(map_of__isnull=True).values_list("step_name", "status"))
    return mark_plan(run, statuses, step_run.step_name, outcome, has_output=_has_output(step_run))


def _has_output(step_run: StepRun) -> bool:
    return bool(step_run.output_path) or step_run.output_inline is not None


def mark_step(step_run: StepRun, outcome: str, reason: str, user, *, expected: tuple[str, int]) -> tuple[MarkPlan, list[int]]:
    """Set the outcome of a failed, upstream-failed or stuck step by hand: `succeeded` (the
    steps below it run as if it had; it has no output, so they receive None for it) or
    `failed` (the steps below it become upstream failed). `expected` is the (status,
    attempt) the operator saw: a step that changed since is refused, and nothing changes.
    The run's counters and status follow: a run that had finished re-opens when steps
    are left to run, and finishes (succeeded or failed) when none is. Call inside the
    transaction that records the audit event; returns the plan applied and the ids of
    step runs queued, to enqueue once it has committed."""
    reason = reason.strip()
    if not reason:
        raise ActionRefused("Say why the step is marked by hand: the reason is kept in the audit trail.")
    now = timezone.now()
    with transaction.atomic():
        # The run first, as its other bookkeeping does: nothing else decides the fate of
        # its steps until this commits (cancel, a step failing, another mark).
        run = statements.lock_run(step_run.run_id)
        run.snapshot = step_run.run.snapshot
        current = StepRun.objects.get(pk=step_run.pk)
        if (current.status, current.attempt) != tuple(expected):
            raise ActionRefused(_changed(current, expected))
        refusal = mark_refusal(current, run, outcome, now)
        if refusal:
            raise ActionRefused(refusal)
        rows = {name: (pk, status, queue) for pk, name, status, queue in
                StepRun.objects.filter(run_id=run.pk, map_of__isnull=True).values_list("pk", "step_name", "status", "queue")}
        statuses = {name: status for name, (_pk, status, _queue) in rows.items()}
        plan = mark_plan(run, statuses, current.step_name, outcome, has_output=_has_output(current))

        this_state = StepRun.objects.filter(pk=current.pk, status=current.status, attempt=current.attempt)
        if current.status == Status.RUNNING:  # still without a sign of life
            this_state = this_state.filter(Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=_alive_since(now)))
        fields = {"status": outcome, "finished_at": current.finished_at or now, "marked_by": user,
                  "marked_reason": reason[:500], "marked_at": now, "code_wait_since": None}
        if current.status == Status.RUNNING:  # what the attempt printed, as far as it got
            fields["log"] = artifacts.log_tail(artifacts.log_path(run.pk, current.step_name, current.attempt))
        if outcome == Status.FAILED and not current.error:
            fields["error"] = f"marked failed by hand by {user.get_username()}: {reason}"[:500]
        if not this_state.update(**fields):
            raise ActionRefused(_changed(StepRun.objects.get(pk=current.pk), expected))

        queued = _apply(run.pk, plan, statuses, rows, now)
        moved = sum(
            (status in FINISHED) - (statuses[name] in FINISHED) for name, status in plan.after.items()
        )
        finished, total = statements.count_finished(run.pk, moved)
        if finished >= total:
            statements.close_run(run.pk, now)
        elif run.status != Status.RUNNING:
            Run.objects.filter(pk=run.pk).update(status=Status.RUNNING, finished_at=None, started_at=run.started_at or now)
    return plan, queued


def _apply(run_id: int, plan: MarkPlan, statuses: dict, rows: dict, now) -> list[int]:
    """Give the steps below the marked one their new statuses, and those left waiting their
    count of upstream steps not succeeded (read under the run's lock; a success still being
    recorded counts itself once this commits, see statements.upstream_done). One UPDATE per
    (old status, new status, upstream left), each conditional on the status read: anything
    that moved undoes the whole mark."""
    groups = {}
    for name in (set(plan.after) | set(plan.upstream_left)) - {plan.step}:
        new = plan.after.get(name, statuses[name])
        groups.setdefault((statuses[name], new, plan.upstream_left.get(name)), []).append(name)
    queued = []
    for (old, new, left), names in groups.items():
        fields = {"status": new}
        if new in UNFINISHED:
            fields.update(finished_at=None, upstream_left=left or 0, queued_at=now if new == Status.QUEUED else None)
        else:
            fields["finished_at"] = now
        if StepRun.objects.filter(run_id=run_id, step_name__in=names, status=old).update(**fields) != len(names):
            raise ActionRefused("Steps of this run changed while it was being marked; nothing was changed. Try again.")
        if new == Status.QUEUED and old != Status.QUEUED:
            queued.extend(rows[name][0] for name in names)
    return sorted(queued)


def _changed(current: StepRun, expected) -> str:
    status, attempt = expected
    was = dict(Status.choices).get(status, status) + (f" (attempt {attempt})" if attempt else "")
    now_is = current.get_status_display() + (f" (attempt {current.attempt})" if current.attempt else "")
    if (current.status, current.attempt) == (status, attempt):  # the same, but its worker is alive again
        now_is += ", with a recent sign of life"
    return (
        f"Step {current.step_name} changed meanwhile: the page showed it {was}, and it is {now_is} now. "
        "Nothing was changed; look at it again before marking it."
    )
