"""Mapped steps (`@p.map(over=...)`): one step run per item of an upstream output, known
only when that upstream succeeds (Airflow's dynamic task mapping, Prefect's `.map()`).

The mapped step keeps its one step run in the run (the node: what the run's counters, the DAG
and what waits below it see). When a worker claims it, it does not call the step's function:
it *expands* it — reads the upstream output, saves each item as the input of an item step
run of its own ("score[0]", "score[1]" …, `map_of` the node), queues them all and leaves the
node `awaiting`, holding no worker. Items are ordinary step runs to the engine: claimed,
retried, timed out, rescued by the watchdog, each with its attempts and log. Each item that
finishes for good counts itself on the node (one conditional UPDATE, which on PostgreSQL
locks the node row: siblings finishing together queue up on it); the last one closes the
node — succeeded when every item did (its successors are told, as for any success), failed
when any failed (what is below it is upstream failed), cancelled when the run was.

What takes a mapped step's output receives the items' results in their order: a list, or a
dict with the upstream's keys when it returned a dict (the node's own output holds the keys).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from app import artifacts
from app.models import Run, Status, StepRun
from app.runs import engine, statements

log = logging.getLogger(__name__)

STEP = StepRun._meta.db_table
# The items named in a failed map's error, at most.
NAMED_FAILURES = 5


def is_item(step_run: StepRun) -> bool:
    """Whether the step run is an item of a mapped step ("score[3]")."""
    return step_run.step_name.endswith("]")


def item_name(step_name: str, index: int) -> str:
    return f"{step_name}[{index}]"


def _output(path, inline, part=None):
    # A step marked succeeded by hand (app.runs.actions.mark_step) produced nothing: what
    # takes its output receives None, as the confirmation page said.
    return artifacts.load_output(path, inline, part) if path or inline is not None else None


def gathered(pk: int, path, inline, items_total: int, mapped: bool, part=None):
    """A step's output as a step taking it receives it: a mapped step's items' outputs, in
    their order (a dict by the mapped-over keys, which the node's own output holds). `pk`:
    the step run that has the items (a retry's reused step: the one it reused)."""
    if not mapped or not items_total:
        return _output(path, inline, part)
    keys = _output(path, inline)
    results = [
        _output(item_path, item_inline, part) for item_path, item_inline in
        StepRun.objects.filter(map_of_id=pk).order_by("map_index").values_list("output_path", "output_inline")
    ]
    return dict(zip(keys, results)) if keys is not None else results


def upstream_rows(run_id: int, names) -> dict:
    """name → (pk, status, output_path, output_inline, items_total) of these steps of the
    run; the pk of a reused step is the one it reused, which has its items."""
    if not names:
        return {}
    return {
        name: (reused or pk, *rest) for name, pk, reused, *rest in
        StepRun.objects.filter(run_id=run_id, step_name__in=list(names)).values_list(
            "step_name", "pk", "reused_from_id", "status", "output_path", "output_inline", "items_total"
        )
    }


def skip_reason(statuses: dict, when_upstream: str) -> str | None:
    """Why a step whose upstream steps ended with `statuses` (name → status) is skipped, or
    None when it runs: any upstream skipped skips it, unless `when_upstream="any"`, which
    skips it only when every upstream step was skipped."""
    skipped = [name for name, status in statuses.items() if status == Status.SKIPPED]
    if not skipped:
        return None
    if when_upstream != "any":
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        return f"upstream step {skipped[0]!r} was skipped{more}"
    if len(skipped) == len(statuses):
        return "every upstream step was skipped"
    return None


def check_upstream(step_run: StepRun, step) -> dict:
    """The rows of the step's upstream steps (upstream_rows); raises engine.Skipped when one
    was skipped and the step does not run then (skip_reason)."""
    rows = upstream_rows(step_run.run_id, step.pipeline.upstream(step))
    why = skip_reason({name: row[1] for name, row in rows.items()}, step.when_upstream)
    if why:
        raise engine.Skipped(why)
    return rows


def load_inputs(step_run: StepRun, step, rows: dict | None) -> dict:
    """What a step's parameters receive, from its upstream `rows` (check_upstream's, or None:
    those of its inputs are read here): each
    upstream step's output (a mapped one's results gathered; a skipped one's None; a named
    output of a step that has several, that one), a group's
    outputs as a dict by step name (without skipped ones), and an item its own input."""
    pipe = step.pipeline
    groups = pipe.groups()
    if rows is None:
        rows = upstream_rows(step_run.run_id, {
            name for want in step.inputs if not (want == step.map_over and is_item(step_run))
            for name in groups.get(want, [pipe.source(want)[0]])
        })

    def value(name, part=None):
        pk, status, path, inline, items_total = rows[name]
        if status == Status.SKIPPED:
            return None
        return gathered(pk, path, inline, items_total, pipe.steps[name].map_over is not None, part)

    inputs = {}
    for want in step.inputs:
        if want == step.map_over and is_item(step_run):
            path, inline = StepRun.objects.values_list("input_path", "input_inline").get(pk=step_run.pk)
            inputs[want] = _output(path, inline)
        elif want in groups:
            inputs[want] = {name: value(name) for name in groups[want] if rows[name][1] != Status.SKIPPED}
        else:
            inputs[want] = value(*pipe.source(want))  # a named output: only that one is read
    return inputs


def expand(node: StepRun, over: str) -> engine.Ready:
    """The claimed node of a mapped step: create and queue its items, one per item of the
    output of `over`; the node then awaits them. An output that cannot be mapped over fails
    the node's attempt, saying why."""
    run_id = node.run_id
    graph = engine.snapshot_dag(node.run.snapshot_id, node.run.snapshot.source_hash)
    rows = upstream_rows(run_id, graph.predecessors(node.step_name))
    why = skip_reason({name: row[1] for name, row in rows.items()}, graph.nodes[node.step_name]["when_upstream"])
    if why or rows[over][1] == Status.SKIPPED:
        return engine.record_skipped(node, "", why or f"it maps over {over!r}, which was skipped")
    try:
        value = gathered(*rows[over][:1], *rows[over][2:], graph.nodes[over]["map_over"] is not None)
    except Exception as exc:  # noqa: BLE001 — a missing or unreadable file: the attempt fails
        return engine.fail_attempt(node, "", f"could not read the output of {over!r} to map over: "
                                             f"{engine.supervisor.describe_exception(exc)}")
    if isinstance(value, dict):
        keys, values = list(value), list(value.values())
    elif isinstance(value, (list, tuple)):
        keys, values = None, list(value)
    else:
        return engine.fail_attempt(
            node, "", f"maps over the output of {over!r}, which is a {type(value).__module__}."
                      f"{type(value).__qualname__}, not a list, a tuple or a dict",
        )
    if len(values) > settings.MAP_MAX_ITEMS:
        return engine.fail_attempt(
            node, "", f"maps over the output of {over!r}, which has {len(values):,} items; a map takes at most "
                      f"{settings.MAP_MAX_ITEMS:,} (MAP_MAX_ITEMS)",
        )
    now = timezone.now()
    if not values:
        output = artifacts.save_output(run_id, node.step_name, {} if keys is not None else [], node.attempt,
                                       inline_max=settings.STEP_OUTPUT_INLINE_BYTES)
        return engine.record_success(node, "", output)
    # Each item runs on the node's queue and takes a slot of the node's pool.
    position, queue, pool = StepRun.objects.values_list("position", "queue", "pool").get(pk=node.pk)
    inline_max = settings.STEP_OUTPUT_INLINE_BYTES
    inputs = [artifacts.save_output(run_id, f"{item_name(node.step_name, i)}.input", v, 1, inline_max=inline_max)
              for i, v in enumerate(values)]
    keys_saved = artifacts.save_output(run_id, node.step_name, keys, node.attempt, inline_max=inline_max)
    with transaction.atomic():
        if not StepRun.objects.filter(pk=node.pk, status=Status.RUNNING, attempt=node.attempt).update(
            status=Status.AWAITING, items_total=len(values), items_left=len(values), items_failed=0,
            output_path=keys_saved[0], output_inline=keys_saved[1], heartbeat_at=None, error="",
        ):
            return engine.Ready()
        items = StepRun.objects.bulk_create(
            [
                StepRun(
                    run_id=run_id, step_name=item_name(node.step_name, i), position=position, map_of_id=node.pk,
                    map_index=i, status=Status.QUEUED, queued_at=now, queue=queue, pool=pool, input_path=path,
                    input_inline=inline,
                )
                for i, (path, inline) in enumerate(inputs)
            ],
            batch_size=500,
        )
    log.info("step run %s: %d items of %s queued", node.pk, len(items), node.step_name)
    ids = [item.pk for item in items]
    if None in ids:  # a database that does not return ids from a bulk insert
        ids = list(StepRun.objects.filter(map_of_id=node.pk).order_by("map_index").values_list("pk", flat=True))
    return engine.Ready(ids, queues=dict.fromkeys(ids, queue))


def record_item_success(item: StepRun, log_text: str, output: tuple, status=Status.SUCCEEDED) -> engine.Ready:
    now = timezone.now()
    with transaction.atomic():
        if not statements.mark_succeeded(item, now, log_text, output, status):
            return engine.Ready()
        return item_finished(item, now, failed=False)


def item_finished(item: StepRun, now, *, failed: bool) -> engine.Ready:
    """An item finished for good (its row is updated already): count it on its node, and
    close the node when it was the last. Inside a transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {STEP} SET items_left = items_left - 1, items_failed = items_failed + %s"
            f" WHERE id = (SELECT map_of_id FROM {STEP} WHERE id = %s) AND status = %s AND items_left > 0"
            " RETURNING id, items_left",
            [int(failed), item.pk, Status.AWAITING],
        )
        row = cursor.fetchone()
    if row is None or row[1] > 0:
        return engine.Ready()
    return close(row[0], now)


def items_stopped(node_id: int, count: int, now) -> engine.Ready:
    """`count` items of the node were cancelled before they started (the run was
    cancelled): count them, and close the node if nothing of it is left. Inside a transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {STEP} SET items_left = items_left - %s, items_failed = items_failed + %s"
            " WHERE id = %s AND status = %s AND items_left >= %s RETURNING items_left",
            [count, count, node_id, Status.AWAITING, count],
        )
        row = cursor.fetchone()
    if row is None or row[0] > 0:
        return engine.Ready()
    return close(node_id, now)


def close(node_id: int, now) -> engine.Ready:
    """Every item of the node has finished: the node succeeds if they all did (and what
    waits for it is told, as for any success), else it fails (or is cancelled, with its
    run). Inside a transaction; the node row is locked by the caller's UPDATE."""
    node = StepRun.objects.select_related("run__snapshot").defer("run__snapshot__layout_svg").get(pk=node_id)
    run = node.run
    graph = engine.snapshot_dag(run.snapshot_id, run.snapshot.source_hash)
    if not node.items_failed:
        StepRun.objects.filter(pk=node.pk, status=Status.AWAITING).update(status=Status.RUNNING)
        node.status = Status.RUNNING
        recorded = statements.record_success(
            node, now, "", (node.output_path, node.output_inline), list(graph.successors(node.step_name))
        )
        if recorded is None:
            return engine.Ready()
        finished, total, queued, _claimed = recorded
        if finished >= total:
            statements.close_run(run.pk, now)
        return engine.Ready([pk for pk, _queue in queued], queues=dict(queued))
    cancelled = Run.objects.filter(pk=run.pk, cancel_requested_at__isnull=False).exists()
    failed = list(
        StepRun.objects.filter(map_of_id=node.pk, status__in=[Status.FAILED, Status.CANCELLED])
        .order_by("map_index").values_list("step_name", flat=True)[:NAMED_FAILURES]
    )
    named = ", ".join(failed) + (" …" if node.items_failed > len(failed) else "")
    if cancelled:
        status, error = Status.CANCELLED, "stopped: the run was cancelled"
    else:
        status, error = Status.FAILED, f"{node.items_failed} of {node.items_total} items failed: {named}"
    StepRun.objects.filter(pk=node.pk, status=Status.AWAITING).update(status=status, finished_at=now, error=error[:500])
    if cancelled:
        statements.finish_steps(run.pk, 1, now)
    else:
        engine.fail_below(run.pk, graph, node.step_name, now)
    return engine.Ready()
