"""The state machine of a run.

A run's step runs go pending → queued → running → succeeded / failed, or pending →
upstream_failed when something above them failed. Every change is a conditional UPDATE, so a
step run is claimed by at most one worker however often its task is delivered. The engine
never enqueues anything itself: `start_run` and `execute_step` return the ids of step runs
that became ready, and the caller (app.tasks for the queue, `run_inline` for --sync) decides
how to run them. That keeps one code path for the worker, the CLI and the tests.
"""

from __future__ import annotations

import datetime
import functools
import logging
import math
import os
import socket
import threading
import time
import traceback as tb

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from app import artifacts, capture, engine_sql
from app import graph as dag
from app.models import Metric, PipelineSnapshot, Run, Status, StepRun
from app.registry import ParamError, registry

log = logging.getLogger(__name__)
logging.getLogger("pipelines").setLevel(logging.INFO)


class UnknownPipeline(LookupError):
    """No valid pipeline of that name is registered."""

    def __init__(self, name):
        self.name = name
        known = ", ".join(registry.pipelines()) or "none"
        super().__init__(f"there is no pipeline named {name!r} (known pipelines: {known})")


__all__ = ["UnknownPipeline", "ParamError", "start_run", "execute_step", "run_inline", "StepContext"]


class StepContext:
    """What a step function receives as its first argument.

    - `ctx.params`: the run's parameters (an instance of the pipeline's Params class)
    - `ctx.logger`: a logger whose records are stored on the step run
    - `ctx.log_metric(name, value)`: record a number shown on the run page
    - `ctx.run_id`, `ctx.step_run_id`, `ctx.attempt`, `ctx.pipeline_name`, `ctx.step_name`
    - `ctx.artifacts_dir`: a directory for extra files this step writes
    """

    def __init__(self, step_run: StepRun, params):
        self._step_run = step_run
        self.params = params
        self.run_id = step_run.run_id
        self.step_run_id = step_run.pk
        self.attempt = step_run.attempt
        self.pipeline_name = step_run.run.pipeline_name
        self.step_name = step_run.step_name
        self.logger = logging.getLogger(f"pipelines.{self.pipeline_name}.{self.step_name}")

    @property
    def artifacts_dir(self):
        return artifacts.step_dir(self.run_id, self.step_name)

    def log_metric(self, name: str, value: float):
        """Record a metric of this run (a finite number under a name of up to 100 characters)."""
        if not isinstance(name, str) or not name or len(name) > 100:
            raise ValueError(f"metric name {name!r} must be a non-empty string of at most 100 characters")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"metric {name!r}: value {value!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"metric {name!r}: value {value!r} is not finite")
        Metric.objects.create(step_run=self._step_run, run_id=self.run_id, name=name, value=number)


@functools.lru_cache(maxsize=256)
def snapshot_graph(snapshot_id: int, source_hash: str) -> dict:
    """A snapshot's JSON, loaded once per process (snapshots never change; the hash in the
    key guards against a reused id after a rolled-back test transaction)."""
    return PipelineSnapshot.objects.values_list("graph", flat=True).get(pk=snapshot_id, source_hash=source_hash)


@functools.lru_cache(maxsize=256)
def snapshot_dag(snapshot_id: int, source_hash: str):
    """A snapshot's networkx graph, built once per process; node data holds `retries`."""
    body = snapshot_graph(snapshot_id, source_hash)
    graph = dag.from_snapshot(body)
    for step in body["steps"]:
        graph.nodes[step["name"]]["retries"] = step.get("retries", 0)
    return graph


def snapshot_for(pipe) -> PipelineSnapshot:
    """The stored snapshot of the pipeline's current code (created on first use)."""
    body = pipe.snapshot()
    snapshot, _created = PipelineSnapshot.objects.get_or_create(
        pipeline_name=pipe.name, source_hash=body["source_hash"], defaults={"graph": body}
    )
    return snapshot


def start_run(pipeline_name: str, raw_params: dict | None = None, *, user=None, source="web"):
    """Create a run and its step runs in one transaction.

    Validates the parameters first (raises ParamError naming each bad one, UnknownPipeline
    for an unknown name) so nothing is created from bad input. Returns `(run, ready_ids)`:
    the caller enqueues `ready_ids` once the transaction has committed.
    """
    pipe = registry.get(pipeline_name)
    if pipe is None:
        raise UnknownPipeline(pipeline_name)
    params = pipe.parse_params(raw_params or {})
    with transaction.atomic():
        snapshot = snapshot_for(pipe)
        steps = snapshot.steps
        now = timezone.now()
        run = Run.objects.create(
            snapshot=snapshot,
            pipeline_name=pipe.name,
            params=params,
            triggered_by=user if user is not None and user.is_authenticated else None,
            trigger_source=source,
            steps_total=len(steps),
        )
        StepRun.objects.bulk_create(
            StepRun(
                run=run,
                step_name=step["name"],
                position=position,
                status=Status.QUEUED if not step["after"] else Status.PENDING,
                queued_at=now if not step["after"] else None,
            )
            for position, step in enumerate(steps)
        )
        ready = list(
            StepRun.objects.filter(run=run, status=Status.QUEUED).order_by("position").values_list("pk", flat=True)
        )
    return run, ready


def _worker_name():
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


class Heartbeat:
    """Marks the step runs this process is running as alive, from one daemon thread.

    A step run whose mark goes stale lost its worker (killed, machine gone):
    `rescue_lost_steps` puts it back on the queue. Airflow calls these zombies.
    """

    def __init__(self):
        self.step_run_ids = set()
        self.lock = threading.Lock()
        self.thread = None

    def add(self, step_run_id):
        with self.lock:
            self.step_run_ids.add(step_run_id)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._beat, name="step-heartbeat", daemon=True)
                self.thread.start()

    def discard(self, step_run_id):
        with self.lock:
            self.step_run_ids.discard(step_run_id)

    def _beat(self):
        while True:
            time.sleep(settings.STEP_HEARTBEAT_SECONDS)
            with self.lock:
                ids = list(self.step_run_ids)
            if not ids:
                continue
            try:
                StepRun.objects.filter(pk__in=ids, status=Status.RUNNING).update(heartbeat_at=timezone.now())
            except Exception:
                # A locked or lost database must not end the thread; the next beat retries.
                log.exception("could not record the heartbeat of step runs %s", ids)
            finally:
                connection.close()


heartbeat = Heartbeat()


def rescue_lost_steps() -> list[int]:
    """Put running step runs whose worker stopped beating back on the queue; returns
    their ids for the caller to enqueue. Conditional on the stale heartbeat, so a worker
    that comes back to life and a second watchdog cannot both win."""
    now = timezone.now()
    cutoff = now - datetime.timedelta(seconds=settings.STEP_LOST_AFTER_SECONDS)
    rescued = []
    for step_run in StepRun.objects.filter(status=Status.RUNNING, heartbeat_at__lt=cutoff).only("pk", "heartbeat_at", "worker"):
        note = f"--- worker {step_run.worker} stopped responding; the step was queued again ---\n"
        updated = StepRun.objects.filter(
            pk=step_run.pk, status=Status.RUNNING, heartbeat_at=step_run.heartbeat_at
        ).update(status=Status.QUEUED, queued_at=now, log=Concat(F("log"), Value(note)))
        if updated:
            log.warning("step run %s lost its worker %s; queued again", step_run.pk, step_run.worker)
            rescued.append(step_run.pk)
    return rescued


def _claim(step_run_id) -> StepRun | None:
    with transaction.atomic():
        return engine_sql.claim(step_run_id, timezone.now(), _worker_name())


def execute_step(step_run_id: int) -> list[int]:
    """Run one step run if it is still queued; record its outcome.

    Returns the ids of step runs that became ready because of it. A step run that is not
    queued any more (claimed by another worker, cancelled) is left alone and [] returned.
    """
    step_run = _claim(step_run_id)
    if step_run is None:
        return []
    heartbeat.add(step_run.pk)
    try:
        return _execute(step_run)
    finally:
        heartbeat.discard(step_run.pk)


def _execute(step_run: StepRun) -> list[int]:
    run = step_run.run
    earlier = step_run.log  # what failed attempts before this one printed

    def save_log_so_far(text):
        StepRun.objects.filter(pk=step_run.pk, status=Status.RUNNING, attempt=step_run.attempt).update(log=earlier + text)

    with capture.capture(on_flush=save_log_so_far) as output:
        try:
            func, inputs, params = _prepare(step_run)
            value = func(StepContext(step_run, params), **inputs)
            output_path = artifacts.save_output(run.pk, step_run.step_name, value)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            trace = tb.format_exc()
            return _record_failure(step_run, output.getvalue(), error, trace)
    return _record_success(step_run, output.getvalue(), output_path)


def _prepare(step_run: StepRun):
    """Find the step's code, its upstream outputs and its parameters, or raise with a
    message an operator can act on."""
    run = step_run.run
    pipe = registry.get(run.pipeline_name)
    if pipe is None:
        problems = registry.problems().get(run.pipeline_name)
        reason = "; ".join(problems) if problems else "it is no longer defined in pipelines/"
        raise RuntimeError(f"pipeline {run.pipeline_name!r} cannot run: {reason}")
    step = pipe.steps.get(step_run.step_name)
    if step is None:
        raise RuntimeError(f"step {step_run.step_name!r} no longer exists in pipeline {pipe.name!r}")
    if pipe.snapshot()["source_hash"] != run.snapshot.source_hash:
        logging.getLogger("app.engine").warning(
            "the pipeline's code changed since this run was started; running the current code of %r", step.name
        )
    inputs = {}
    if step.inputs:
        paths = dict(
            StepRun.objects.filter(run=run, step_name__in=step.inputs).values_list("step_name", "output_path")
        )
        for name in step.inputs:
            inputs[name] = artifacts.load_output(paths[name])
    params = pipe.make_params(run.params)
    return step.func, inputs, params


# Every update below is conditional on the step run still being in *this* attempt: a worker
# given up for dead (rescue_lost_steps) that finishes after all must not overwrite the
# attempt that replaced it.


def _record_success(step_run: StepRun, log_text: str, output_path: str) -> list[int]:
    run_id = step_run.run_id
    graph = snapshot_dag(step_run.run.snapshot_id, step_run.run.snapshot.source_hash)
    now = timezone.now()
    with transaction.atomic():
        if not engine_sql.mark_succeeded(step_run, now, step_run.log + log_text, output_path):
            return []
        # Counting first takes the run's lock (PostgreSQL; SQLite's IMMEDIATE transactions
        # already serialise), so a sibling finishing at the same moment is seen below.
        finished, total = engine_sql.count_finished(run_id, 1)
        successors = list(graph.successors(step_run.step_name))
        ready = []
        if successors:
            # Only the other upstreams of the successors need a look (none in a chain).
            others = {pred for succ in successors for pred in graph.predecessors(succ)} - {step_run.step_name}
            statuses = engine_sql.statuses(run_id, others) if others else {}
            statuses[step_run.step_name] = Status.SUCCEEDED
            candidates = [
                succ
                for succ in successors
                if all(statuses.get(pred) == Status.SUCCEEDED for pred in graph.predecessors(succ))
            ]
            if candidates:
                ready = engine_sql.queue_pending(run_id, candidates, now)
        if finished >= total:
            _close_run(run_id, now)
    return ready


def _record_failure(step_run: StepRun, log_text: str, error: str, trace: str) -> list[int]:
    run_id = step_run.run_id
    graph = snapshot_dag(step_run.run.snapshot_id, step_run.run.snapshot.source_hash)
    retries = graph.nodes[step_run.step_name]["retries"]
    now = timezone.now()
    with transaction.atomic():
        if step_run.attempt <= retries:
            # Another attempt: back to the queue, keeping what this one printed.
            log_text = f"{step_run.log}{log_text}--- attempt {step_run.attempt} failed ---\n{trace}\n"
            updated = StepRun.objects.filter(pk=step_run.pk, status=Status.RUNNING, attempt=step_run.attempt).update(
                status=Status.QUEUED, queued_at=now, log=log_text, error=error
            )
            return [step_run.pk] if updated else []
        updated = StepRun.objects.filter(pk=step_run.pk, status=Status.RUNNING, attempt=step_run.attempt).update(
            status=Status.FAILED, finished_at=now, log=step_run.log + log_text, error=error, traceback=trace
        )
        if not updated:
            return []
        below = dag.downstream(graph, [step_run.step_name])
        skipped = StepRun.objects.filter(run_id=run_id, step_name__in=below, status=Status.PENDING).update(
            status=Status.UPSTREAM_FAILED, finished_at=now
        )
        finished, total = engine_sql.count_finished(run_id, 1 + skipped)
        if finished >= total:
            _close_run(run_id, now)
    return []


def _close_run(run_id: int, now):
    """All steps have finished: the run failed if any step failed or was skipped for it."""
    failed = StepRun.objects.filter(run_id=run_id, status__in=[Status.FAILED, Status.UPSTREAM_FAILED]).exists()
    Run.objects.filter(pk=run_id).update(status=Status.FAILED if failed else Status.SUCCEEDED, finished_at=now)


def run_inline(run: Run, ready_ids: list[int]) -> Run:
    """Execute a run in this process, step by step, through the same code as the worker."""
    pending = list(ready_ids)
    while pending:
        step_run_id = pending.pop(0)
        pending.extend(execute_step(step_run_id))
    run.refresh_from_db()
    return run
