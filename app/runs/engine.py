"""The state machine of a run.

A run's step runs go pending → queued → running → succeeded / failed, or pending →
upstream_failed when something above them failed. Every change is a conditional UPDATE, so a
step run is claimed by at most one worker however often its task is delivered. The engine
never enqueues anything itself: `start_run` and `execute_step` return the ids of step runs
that became ready, and the caller (app.runs.tasks for the queue, `run_inline` for --sync) decides
how to run them. That keeps one code path for the worker, the CLI and the tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import logging
import os
import pickle
import socket
import threading
import time
import traceback as tb

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F
from django.utils import timezone

from app import artifacts
from app.models import PipelineSnapshot, Run, Status, StepAttempt, StepRun
from app.pipelines import graph as dag
from app.pipelines.registry import DEFAULT_QUEUE, ParamError, Skip, registry
from app.runs import admission, cache, capture, children, logcontext, mapping, statements, supervisor
from app.runs import tags as run_tags
from app.runs.context import RunCancelled, StepContext  # noqa: F401 — engine.RunCancelled is the API
from app.runs.heartbeat import heartbeat

log = logging.getLogger(__name__)
logging.getLogger("pipelines").setLevel(logging.INFO)


class UnknownPipeline(LookupError):
    """No valid pipeline of that name is registered."""

    def __init__(self, name):
        self.name = name
        known = ", ".join(registry.pipelines()) or "none"
        if name in registry.problems():
            super().__init__(f"pipeline {name!r} is not available: {registry.why_unavailable(name)}")
        else:
            super().__init__(f"there is no pipeline named {name!r} (known pipelines: {known})")


__all__ = ["UnknownPipeline", "ParamError", "OtherCode", "RunCancelled", "Ready", "start_run", "execute_step", "run_inline", "StepContext"]


class OtherCode(Exception):
    """The code this process loaded for a run's pipeline is not the code the run started
    with (its snapshot): the step must run where that code is loaded, or not at all."""

    def __init__(self, loaded_hash: str):
        self.loaded_hash = loaded_hash
        super().__init__(loaded_hash)

    def describe(self, step_run: StepRun, waited: float | None) -> str:
        run = step_run.run
        within = f" within {waited:g} s" if waited is not None else ""
        if not self.loaded_hash:
            return (
                f"worker {step_run.worker.rsplit(':', 1)[0]} does not have pipeline {run.pipeline_name!r} loaded, and "
                f"no worker that has it took the step{within}: start a worker whose pipelines package defines it"
            )
        snapshots = dict(
            PipelineSnapshot.objects.filter(
                pipeline_name=run.pipeline_name, source_hash__in=[self.loaded_hash, run.snapshot.source_hash]
            ).values_list("source_hash", "created_at")
        )
        mine, theirs = snapshots.get(self.loaded_hash), snapshots.get(run.snapshot.source_hash)
        if mine is None or theirs is None or mine < theirs:
            return (
                f"worker {step_run.worker.rsplit(':', 1)[0]} runs older code of pipeline {run.pipeline_name!r} than "
                f"this run (loaded {self.loaded_hash[:8]}, the run's {run.snapshot.source_hash[:8]}), and no worker "
                f"with the run's code took the step{within}: restart the worker"
            )
        return (
            f"the code of pipeline {run.pipeline_name!r} changed since this run started (now "
            f"{self.loaded_hash[:8]}, the run's {run.snapshot.source_hash[:8]}), and no worker has the run's code "
            f"any more{within}: retry the run to use the current code"
        )


class Skipped(Exception):
    """The step is skipped: its condition was false, it returned skip(), or an upstream step
    was skipped (and it runs only when all of them succeeded). The message says which."""


class Ready(list):
    """The step run ids that may run now, and in `.later` (id, seconds) pairs of retries
    that may run after a delay. A list, so callers that only run what is ready now can
    treat it as one. `.queues` maps ids to their queue where known (app.runs.tasks looks
    up the others)."""

    def __init__(self, ids=(), later=(), queues=None, claimed=None):
        super().__init__(ids)
        self.later = list(later)
        self.queues = dict(queues or {})
        # The next step this thread took on with the success it records (execute_step's
        # `claim_next`): running already, for this thread to execute.
        self.claimed: StepRun | None = claimed


@functools.lru_cache(maxsize=256)
def snapshot_graph(snapshot_id: int, source_hash: str) -> dict:
    """A snapshot's JSON, loaded once per process (snapshots never change; the hash in the
    key guards against a reused id after a rolled-back test transaction)."""
    return PipelineSnapshot.objects.values_list("graph", flat=True).get(pk=snapshot_id, source_hash=source_hash)


@functools.lru_cache(maxsize=256)
def snapshot_dag(snapshot_id: int, source_hash: str):
    """A snapshot's networkx graph, built once per process; node data holds the retry rules."""
    body = snapshot_graph(snapshot_id, source_hash)
    graph = dag.from_snapshot(body)
    for step in body["steps"]:
        graph.nodes[step["name"]].update(
            retries=step.get("retries", 0), retry_delay=step.get("retry_delay", 0), backoff=step.get("backoff", 1),
            isolation=step.get("isolation", "process"), timeout=step.get("timeout"),
            queue=step.get("queue") or DEFAULT_QUEUE, map_over=step.get("map_over"),
            when_upstream=step.get("when_upstream", "all"), child=step.get("child"), pool=step.get("pool", ""),
        )
    return graph


def snapshot_for(pipe) -> PipelineSnapshot:
    """The stored snapshot of the pipeline's current code (created on first use)."""
    body = pipe.snapshot()
    snapshot, _created = PipelineSnapshot.objects.get_or_create(
        pipeline_name=pipe.name, source_hash=body["source_hash"], defaults={"graph": body}
    )
    return snapshot


def start_run(
    pipeline_name: str, raw_params: dict | None = None, *, user=None, source="web", parameter_revision=None,
    rerun_of=None, tags=(), ignore_cache=False, parent_step: int | None = None,
):
    """Create a run and its step runs in one transaction. `ignore_cache`: its cached steps
    run instead of reusing earlier outputs (app.runs.cache).

    Validates the parameters and `tags` first (raises ParamError naming each bad parameter,
    app.runs.tags.TagError, a ValueError, naming a bad tag, UnknownPipeline for an unknown
    name) so nothing is created from bad input. Returns `(run, ready_ids)`: the caller
    enqueues `ready_ids` once the transaction has committed.
    """
    pipe = registry.get(pipeline_name)
    if pipe is None:
        raise UnknownPipeline(pipeline_name)
    params = pipe.parse_params(raw_params or {})
    tags = run_tags.check(tags)
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
            parameter_revision=parameter_revision,
            rerun_of=rerun_of,
            steps_total=len(steps),
            ignore_cache=bool(ignore_cache),
            parent_step_id=parent_step,
        )
        run_tags.save_new(run, tags)
        StepRun.objects.bulk_create(
            StepRun(
                run=run,
                step_name=step["name"],
                position=position,
                status=Status.QUEUED if not step["after"] else Status.PENDING,
                queued_at=now if not step["after"] else None,
                upstream_left=len(step["after"]),
                queue=step.get("queue") or DEFAULT_QUEUE,
                pool=step.get("pool", ""),
            )
            for position, step in enumerate(steps)
        )
        ready = list(
            StepRun.objects.filter(run=run, status=Status.QUEUED).order_by("position").values_list("pk", flat=True)
        )
    return run, ready


def _worker_name():
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


def _claim(step_run_id) -> StepRun | None:
    return statements.claim(step_run_id, timezone.now(), _worker_name())


def execute_step(step_run_id: int, *, supervised: bool = False, claim_next: str | None = None,
                 claimed: StepRun | None = None) -> Ready:
    """Run one step run if it is still queued (or due for a retry); record its outcome.

    `supervised` (the worker): the step's code runs in a child process watched by this thread
    (app.runs.supervisor), unless its step opted in to `isolation="thread"`; a crash or a
    timeout of the child is recorded as the attempt's failure, counted against its retries.
    Otherwise (`run_inline`: the CLI's --sync, the tests) it runs in this thread. Either way
    this thread claims the step and records its outcome: a child only runs the step's code
    (as Airflow 3's task runner, which has no database of its own), so it opens no database
    connection unless the step itself records something (a metric, a model).

    Returns the step runs that became ready because of it (see Ready). A step run that is
    not queued any more (claimed by another worker, cancelled) is left alone.

    `claim_next` (a task going down a chain, app.runs.tasks): the name of this thread's
    queue; a success that makes the step's first successor ready on it claims it in the
    same statement, as `Ready.claimed`, which the caller then passes back as `claimed`
    (the step run this thread holds already) instead of claiming it again.

    A step whose concurrency pool is full, or whose run has no run slot (its pipeline's
    `max_active_runs` are all active), does not start: it is queued again, saying what it
    waits for, and returned in `Ready.later` to be tried again after POOL_RECHECK_SECONDS
    (app.runs.admission). That is not an attempt.
    """
    if claimed is None:
        step_run = _claim(step_run_id)
        if step_run is None:
            return Ready()
        waits = _admit(step_run)
        if waits is not None:
            return waits
    else:
        step_run = claimed
    heartbeat.add(step_run.pk)
    try:
        with logcontext.step(step_run.run_id, step_run.pk, step_run.step_name):
            return _run_and_record(step_run, supervised, claim_next)
    finally:
        heartbeat.discard(step_run.pk)


def _admit(step_run: StepRun) -> Ready | None:
    """None when the claimed step may start; else its task comes back later (it waits for a
    pool slot or a run slot: app.runs.admission). Ungated steps ask nothing more: their pool
    came with the claim, the pipeline's limit is in the run's snapshot, cached here."""
    limit = snapshot_graph(step_run.run.snapshot_id, step_run.run.snapshot.source_hash).get("max_active_runs")
    if not step_run.pool and limit is None:
        return None
    waits = admission.admit(step_run, limit)
    if not waits:
        return None
    log.debug("step run %s waits for %s", step_run.pk, waits)
    return Ready(later=[(step_run.pk, settings.POOL_RECHECK_SECONDS)])


def _run_and_record(step_run: StepRun, supervised: bool, claim_next: str | None = None) -> Ready:
    step = snapshot_dag(step_run.run.snapshot_id, step_run.run.snapshot.source_hash).nodes[step_run.node_name]
    in_child = supervised and step["isolation"] == "process"
    try:
        if step["map_over"] and not mapping.is_item(step_run):
            return mapping.expand(step_run, step["map_over"])
        if in_child:
            return _execute_in_child(step_run, step, claim_next)
        attempt = _attempt(step_run)
        ready = _record(step_run, attempt, in_worker=supervised, claim_next=claim_next)
    except Exception as exc:
        # Recording the outcome failed (database or disk trouble): record that instead,
        # so the step does not wait for the watchdog with the real cause lost.
        log.exception("step run %s: recording its outcome failed", step_run.pk)
        return fail_attempt(step_run, "", "recording the outcome failed: " + _failure_line(exc))
    if attempt.interrupted:
        raise KeyboardInterrupt  # Ctrl-C during `run_pipeline --sync` stops the command, once recorded
    return ready


def _execute_in_child(step_run: StepRun, step: dict, claim_next: str | None = None) -> Ready:
    timeout = step["timeout"] or settings.STEP_TIMEOUT_SECONDS or None
    outcome = supervisor.run_in_child(
        run_attempt_in_child, (statements.portable(step_run),), timeout=timeout,
        grace=settings.STEP_KILL_GRACE_SECONDS, reuse=settings.STEP_PROCESS_REUSE,
        max_memory_mb=settings.STEP_PROCESS_MAX_MEMORY_MB,
    )
    if outcome.finished:
        return _record(step_run, outcome.value, in_worker=True, claim_next=claim_next)
    log.warning("step run %s (process %s): %s", step_run.pk, outcome.pid, outcome.error)
    log_text = artifacts.log_tail(artifacts.log_path(step_run.run_id, step_run.step_name, step_run.attempt))
    if outcome.handed_over:
        return hand_over(step_run, log_text, f"worker {step_run.worker.rsplit(':', 1)[0]} shut down during this attempt")
    return fail_attempt(step_run, log_text, outcome.error)


def hand_over(step_run: StepRun, log_text: str, why: str, *, heartbeat_at=None) -> Ready:
    """The attempt ended for a reason of its worker's, not the step's (a shutdown, a lost
    worker): keep it as a StepAttempt and queue the step again, at once; returns it as ready.
    Such attempts count like failed ones: after more of them than the step's retries allow
    (at least STEP_LOST_RETRIES) the step fails, so a step that takes its worker down
    cannot loop. `heartbeat_at` (the watchdog): only if the step was not marked alive since,
    so a worker that comes back to life and a second watchdog cannot both win."""
    rules = snapshot_dag(step_run.run.snapshot_id, step_run.run.snapshot.source_hash).nodes[step_run.node_name]
    allowed = max(rules["retries"], settings.STEP_LOST_RETRIES)
    if step_run.attempt > allowed:
        return fail_attempt(
            step_run, log_text,
            f"{why}; the step is not tried again after {step_run.attempt} attempts",
        )
    now = timezone.now()
    error = f"{why}; the step was queued again"
    with transaction.atomic():
        this_attempt = StepRun.objects.filter(pk=step_run.pk, status=Status.RUNNING, attempt=step_run.attempt)
        if heartbeat_at is not None:
            this_attempt = this_attempt.filter(heartbeat_at=heartbeat_at)
        if not this_attempt.update(status=Status.QUEUED, queued_at=now, log="", error=error, code_wait_since=None):
            return Ready()
        StepAttempt.objects.create(
            step_run=step_run, number=step_run.attempt, status=Status.FAILED, started_at=step_run.started_at,
            finished_at=now, worker=step_run.worker, log=log_text, error=error,
        )
    return Ready([step_run.pk])


def run_attempt_in_child(claimed: tuple) -> Attempt:
    """The child process's side of a supervised attempt (the step run its worker claimed, as
    statements.portable values): run the step's code; the worker records what became of it."""
    close_old_connections()  # a child kept between attempts may hold a connection gone stale
    step_run = statements.claimed(claimed)
    with logcontext.step(step_run.run_id, step_run.pk, step_run.step_name):
        return _attempt(step_run)


@dataclasses.dataclass
class Attempt:
    """What became of running a step's code: how it `ended` (succeeded, failed, cancelled,
    other_code) and what recording that needs. Small and picklable: a child sends it back."""

    ended: str
    output_path: str = ""
    output_inline: bytes | None = None
    error: str = ""
    trace: str = ""
    loaded_hash: str = ""  # other_code: the code this process has
    logged: bool = False  # the step wrote to its log (else there is no log to read)
    interrupted: bool = False  # by Ctrl-C
    load_seconds: float | None = None  # preparing the step: its inputs loaded (a success only)
    save_seconds: float | None = None  # its output(s) saved
    # A cached step (app.runs.cache): its key, the parameters it read, and the step run whose
    # output it reused (a cache hit: the step did not run).
    cache_key: str = ""
    params_read: dict | None = None
    reused_from: int | None = None


def _attempt(step_run: StepRun) -> Attempt:
    """Run the step's code with its output captured, and save what it returned. Never
    raises for what the step does: every way it can end is an Attempt."""
    log_file = artifacts.log_path(step_run.run_id, step_run.step_name, step_run.attempt)
    with capture.capture(log_file, settings.STEP_LOG_MAX_BYTES) as written:
        try:
            attempt = _run_code(step_run)
        except Skipped as exc:
            attempt = Attempt("skipped", error=str(exc)[:500])
        except RunCancelled:
            attempt = Attempt("cancelled")
        except OtherCode as exc:
            attempt = Attempt("other_code", loaded_hash=exc.loaded_hash)
        except BaseException as exc:  # noqa: BLE001 — sys.exit() and Ctrl-C in a step are its failures too
            attempt = Attempt(
                "failed", error=_failure_line(exc)[:500], trace=_format_traceback(),
                interrupted=isinstance(exc, KeyboardInterrupt),
            )
    # The log is closed (its last line written) before the outcome is recorded.
    attempt.logged = bool(written.written or written.dropped)
    return attempt


def _record(step_run: StepRun, attempt: Attempt, *, in_worker: bool, claim_next: str | None = None) -> Ready:
    """Record an attempt's outcome, with the tail of its log (a step that printed nothing
    has no log to read); a success may claim the next step (execute_step's `claim_next`)."""
    log_text = artifacts.log_tail(artifacts.log_path(step_run.run_id, step_run.step_name, step_run.attempt)) \
        if attempt.logged else ""
    child = snapshot_dag(step_run.run.snapshot_id, step_run.run.snapshot.source_hash).nodes[step_run.node_name]["child"]
    if attempt.ended == "succeeded" and child:
        return children.start(step_run, child, (attempt.output_path, attempt.output_inline), log_text)
    if attempt.ended == "succeeded" and attempt.cache_key:
        output = (attempt.output_path, attempt.output_inline, attempt.load_seconds, attempt.save_seconds)
        ready = record_success(step_run, log_text, output)
        StepRun.objects.filter(pk=step_run.pk, status=Status.SUCCEEDED, attempt=step_run.attempt).update(
            cache_key=attempt.cache_key, params_read=attempt.params_read, reused_from_id=attempt.reused_from,
        )
        return ready
    if attempt.ended == "succeeded":
        output = (attempt.output_path, attempt.output_inline, attempt.load_seconds, attempt.save_seconds)
        return record_success(step_run, log_text, output, claim_next)
    if attempt.ended == "skipped":
        return record_skipped(step_run, log_text, attempt.error)
    if attempt.ended == "cancelled":
        return _record_cancelled(step_run, log_text)
    if attempt.ended == "other_code":
        other = OtherCode(attempt.loaded_hash)
        if in_worker:
            return _wait_for_the_runs_code(step_run, other, log_text)
        # run_pipeline --sync: no other process could run it
        return _record_failure(step_run, log_text, other.describe(step_run, None), "")
    return _record_failure(step_run, log_text, attempt.error, attempt.trace)


def _save_output(step_run: StepRun, value) -> tuple[str, bytes | None]:
    step = registry.get(step_run.run.pipeline_name).steps[step_run.node_name]  # _prepare found it
    try:
        return artifacts.save_output(
            step_run.run_id, step_run.step_name, value, step_run.attempt, inline_max=settings.STEP_OUTPUT_INLINE_BYTES,
            format=step.format, outputs=step.outputs,
        )
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise TypeError(
            f"step {step_run.step_name!r} returned a {type(value).__module__}.{type(value).__qualname__}, "
            f"which cannot be saved: step outputs are pickled ({supervisor.describe_exception(exc)})"
        ) from exc


def _failure_line(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit: the step called sys.exit({exc.code!r})"
    if isinstance(exc, KeyboardInterrupt):
        return "KeyboardInterrupt: the step was interrupted"
    return supervisor.describe_exception(exc)


def _format_traceback() -> str:
    try:
        return tb.format_exc()
    except BaseException as exc:  # noqa: BLE001 — a frame or message that cannot be printed
        return f"(the traceback could not be formatted: {type(exc).__name__})"


def _run_code(step_run: StepRun) -> Attempt:
    """Decide whether the step runs (an upstream skipped, its cache, its condition), run it
    and save its output; raises what ends it otherwise (Skipped, RunCancelled, OtherCode,
    anything the step raises)."""
    started = time.perf_counter()
    step, params = _prepare(step_run)
    # Only a step below a skipped one reads all its upstream rows here (to know whether it is
    # skipped too); the others read those of their inputs, if any (a chain step: one query).
    rows = mapping.check_upstream(step_run, step) if step_run.upstream_skipped or step.cache else None
    key, reading = None, None
    if step.cache:
        # The parameters the step reads (its condition too) are kept with a cached output.
        reading = cache.ReadingParams(params)
        if not callable(step.cache):
            key = cache.key_for(step_run, step, rows)
            hit = _cache_hit(step_run, key, custom=False)
            if hit is not None:
                return hit
    inputs = mapping.load_inputs(step_run, step, rows)
    load_seconds = time.perf_counter() - started
    ctx = StepContext(step_run, reading or params)
    if callable(step.cache):
        key = cache.custom_key(step, ctx, inputs)
        hit = _cache_hit(step_run, key, custom=True)
        if hit is not None:
            return hit
    if step.when is not None and not step.when(ctx, **{name: inputs[name] for name in step.when_inputs}):
        raise Skipped(f"its condition ({step.pipeline.snapshot_step(step.name).get('when')}) is false")
    value = step.func(ctx, **inputs)
    if isinstance(value, Skip):
        raise Skipped(f"it returned skip({value.reason!r})" if value.reason else "it returned skip()")
    started = time.perf_counter()
    path, inline = _save_output(step_run, value)
    return Attempt(
        "succeeded", output_path=path, output_inline=inline, load_seconds=load_seconds,
        save_seconds=time.perf_counter() - started, cache_key=key or "",
        params_read=cache.params_read(reading, step_run.run.params) if reading is not None and key else None,
    )


def _cache_hit(step_run: StepRun, key: str, custom: bool) -> Attempt | None:
    """A succeeded attempt that reuses a cached output, or None (a miss, or "ignore cache")."""
    if cache.ignored(step_run.run_id):
        return None
    hit = cache.lookup(key, step_run.run_id, step_run.run.params, custom)
    if hit is None:
        return None
    print(f"reused the output of run #{hit.run_id} (cache hit): the step did not run")
    return Attempt("succeeded", output_path=hit.output_path, output_inline=hit.output_inline, cache_key=key,
                   params_read=hit.params_read, reused_from=hit.reused_from_id or hit.pk)


def _prepare(step_run: StepRun):
    """Find the step's code and its parameters, or raise with a message an operator can act on."""
    run = step_run.run
    pipe = registry.get(run.pipeline_name)
    if pipe is None:
        module = snapshot_graph(run.snapshot_id, run.snapshot.source_hash).get("module", "")
        if run.pipeline_name not in registry.problems() and module not in registry.import_errors:
            raise OtherCode("")  # not loaded here at all: left for a worker that has it
        reason = registry.why_unavailable(run.pipeline_name, module)
        raise RuntimeError(f"pipeline {run.pipeline_name!r} cannot run: {reason}")
    step = pipe.steps.get(step_run.node_name)
    if step is None:
        raise RuntimeError(f"step {step_run.node_name!r} no longer exists in pipeline {pipe.name!r}")
    loaded = pipe.snapshot()["source_hash"]
    if loaded != run.snapshot.source_hash:
        raise OtherCode(loaded)
    return step, pipe.make_params(run.params)


def fail_attempt(step_run: StepRun, log_text: str, error: str, trace: str = "") -> Ready:
    """Record that the running attempt of `step_run` failed with `error` (one line, as the
    operator reads it): it is retried if the step's rules allow, else the step fails and
    what depends on it is skipped. For failures found outside the step: a crashed child
    process, a lost worker. Nothing happens if the attempt is not running any more."""
    return _record_failure(step_run, log_text, error[:500], trace)


# Every update below is conditional on the step run still being in *this* attempt: a worker
# given up for dead (rescue_lost_steps) that finishes after all must not overwrite the
# attempt that replaced it.


def record_skipped(step_run: StepRun, log_text: str, why: str) -> Ready:
    """The step is skipped (`why`, as the page says it): recorded as done without an output,
    like a success, and each step right below it counts one more upstream step skipped, in the
    same transaction, before any of them can be claimed: each decides when it runs whether it
    is skipped too (mapping.check_upstream)."""
    with transaction.atomic():
        ready = record_success(step_run, log_text, ("", None), status=Status.SKIPPED)
        if not StepRun.objects.filter(pk=step_run.pk, status=Status.SKIPPED).update(error=f"skipped: {why}"[:500]):
            return ready
        if not mapping.is_item(step_run):
            successors = snapshot_dag(step_run.run.snapshot_id, step_run.run.snapshot.source_hash).successors(
                step_run.step_name)
            StepRun.objects.filter(run_id=step_run.run_id, step_name__in=list(successors)).update(
                upstream_skipped=F("upstream_skipped") + 1
            )
    return ready


def record_success(step_run: StepRun, log_text: str, output: tuple, claim_next: str | None = None,
                   status=Status.SUCCEEDED) -> Ready:
    if mapping.is_item(step_run):
        return mapping.record_item_success(step_run, log_text, output, status)
    run_id = step_run.run_id
    graph = snapshot_dag(step_run.run.snapshot_id, step_run.run.snapshot.source_hash)
    now = timezone.now()
    successors = list(graph.successors(step_run.step_name))
    # A worker that began to shut down while the step ran takes nothing more on.
    claim = (claim_next, _worker_name()) if claim_next and successors and not supervisor.stopping.is_set() else None
    # Where a success is one statement (PostgreSQL), atomic by itself, a task going down a
    # chain sends it without BEGIN and COMMIT: two round trips fewer per step. Should it have
    # finished the run after all (its other successors failed already), the run is closed in
    # a transaction of its own right after, under its lock (the watchdog may be closing it at
    # that moment); a worker dying in between leaves it to the watchdog
    # (statements.close_finished_runs).
    alone = claim is not None and statements.success_is_one_statement()
    with contextlib.nullcontext() if alone else transaction.atomic():
        # Marked succeeded, counted on the run (the last one to finish closes it), and each
        # successor counts one more upstream done, queued when none is left: O(successors),
        # a fan-in step is not re-read by each of its N upstreams. A cancelled run has no
        # pending steps left, so nothing is queued for it.
        recorded = statements.record_success(step_run, now, log_text, output, successors, claim, status)
        if recorded is None:
            return Ready()
        finished, total, queued, claimed = recorded
        if finished >= total:
            if alone:
                statements.close_if_finished(run_id, now)
            else:
                statements.close_run(run_id, now)  # the run row is locked by the success already
    if claimed is not None:
        run = step_run.run
        pk, step_name, attempt = claimed
        claimed = statements.claimed((pk, run.pk, step_name, attempt, run.pipeline_name, run.params,
                                      run.snapshot_id, run.snapshot.source_hash, now, claim[1]))
    return Ready([pk for pk, _queue in queued], queues=dict(queued), claimed=claimed)


def _record_failure(step_run: StepRun, log_text: str, error: str, trace: str) -> Ready:
    run_id = step_run.run_id
    graph = snapshot_dag(step_run.run.snapshot_id, step_run.run.snapshot.source_hash)
    step = graph.nodes[step_run.node_name]
    now = timezone.now()
    this_attempt = StepRun.objects.filter(pk=step_run.pk, status=Status.RUNNING, attempt=step_run.attempt)
    with transaction.atomic():
        cancelled = Run.objects.filter(pk=run_id, cancel_requested_at__isnull=False).exists()
        if step_run.attempt <= step["retries"] and not cancelled:
            delay = step["retry_delay"] * step["backoff"] ** (step_run.attempt - 1)
            updated = this_attempt.update(
                status=Status.RETRYING if delay else Status.QUEUED,
                queued_at=now + datetime.timedelta(seconds=delay),
                log="",
                error=error,
                code_wait_since=None,  # the next attempt waits afresh for the right code
            )
            if not updated:
                return Ready()
            # The failed attempt is kept whole; the step run starts the next one afresh.
            StepAttempt.objects.create(
                step_run=step_run, number=step_run.attempt, status=Status.FAILED, started_at=step_run.started_at,
                finished_at=now, worker=step_run.worker, log=log_text, traceback=trace, error=error,
            )
            return Ready(later=[(step_run.pk, delay)]) if delay else Ready([step_run.pk])
        if not this_attempt.update(status=Status.FAILED, finished_at=now, log=log_text, error=error, traceback=trace):
            return Ready()
        if mapping.is_item(step_run):
            return mapping.item_finished(step_run, now, failed=True)
        fail_below(run_id, graph, step_run.step_name, now)
    return Ready()


def fail_below(run_id: int, graph, step_name: str, now):
    """`step_name` failed for good (its row is updated already): what waits below it is
    upstream failed, and all of them count as finished. Inside a transaction."""
    # Locked before the statement that skips what is below, as the run's other
    # bookkeeping does (success, mark by hand): a step re-opened by hand meanwhile is seen.
    statements.lock_run(run_id)
    below = dag.downstream(graph, [step_name])
    skipped = StepRun.objects.filter(run_id=run_id, step_name__in=below, status=Status.PENDING).update(
        status=Status.UPSTREAM_FAILED, finished_at=now
    )
    statements.finish_steps(run_id, 1 + skipped, now)


def _wait_for_the_runs_code(step_run: StepRun, other: OtherCode, log_text: str) -> Ready:
    """Put the step back for a worker that has the run's code, or fail it once it has
    waited STEP_CODE_WAIT_SECONDS for one."""
    now = timezone.now()
    since = StepRun.objects.filter(pk=step_run.pk).values_list("code_wait_since", flat=True).first() or now
    waited = (now - since).total_seconds()
    if waited >= settings.STEP_CODE_WAIT_SECONDS:
        return fail_attempt(step_run, log_text, other.describe(step_run, settings.STEP_CODE_WAIT_SECONDS))
    this_attempt = StepRun.objects.filter(pk=step_run.pk, status=Status.RUNNING, attempt=step_run.attempt)
    # Not an attempt: the step did not start. The claim is undone and the task comes back.
    if not this_attempt.update(
        status=Status.QUEUED, attempt=step_run.attempt - 1, queued_at=now, started_at=None, worker="",
        heartbeat_at=None, code_wait_since=since,
        error=f"waiting for a worker with this run's code of {step_run.run.pipeline_name} "
        f"({step_run.worker.rsplit(':', 1)[0]} has {'other code' if other.loaded_hash else 'no such pipeline'})",
    ):
        return Ready()
    log.warning("step run %s: this worker's code of %r is not the run's; left for another worker",
                step_run.pk, step_run.run.pipeline_name)
    return Ready(later=[(step_run.pk, CODE_RECHECK_SECONDS)])


CODE_RECHECK_SECONDS = 2.0


def _record_cancelled(step_run: StepRun, log_text: str) -> Ready:
    now = timezone.now()
    with transaction.atomic():
        updated = StepRun.objects.filter(pk=step_run.pk, status=Status.RUNNING, attempt=step_run.attempt).update(
            status=Status.CANCELLED, finished_at=now, log=log_text, error="stopped: the run was cancelled"
        )
        if not updated:
            return Ready()
        return stopped(step_run, now)


def stopped(step_run: StepRun, now) -> Ready:
    """A running step run was just marked cancelled (its row is updated already): count it
    as finished, on its run, or for an item on its map. Inside a transaction."""
    if mapping.is_item(step_run):
        return mapping.item_finished(step_run, now, failed=True)
    statements.finish_steps(step_run.run_id, 1, now)
    return Ready()


def fail_unqueued(run_id: int, error: str):
    """The run's first steps could not be put on the queue: fail what has not started (queued
    steps with `error`, what waits for them as upstream failed), so it never starts later. A
    step a worker already claimed runs on; the run fails when it is done."""
    now = timezone.now()
    with transaction.atomic():
        failed = StepRun.objects.filter(run_id=run_id, status=Status.QUEUED).update(
            status=Status.FAILED, finished_at=now, error=error[:500]
        )
        skipped = StepRun.objects.filter(run_id=run_id, status=Status.PENDING).update(
            status=Status.UPSTREAM_FAILED, finished_at=now
        )
        if failed + skipped:
            statements.finish_steps(run_id, failed + skipped, now)


def run_inline(run: Run, ready_ids: list[int]) -> Run:
    """Execute a run in this process, step by step, through the same code as the worker;
    a retry with a delay waits for it here. Its child runs (sub-pipelines) run here too,
    and what a finished child made ready in its parent."""
    now = time.monotonic()
    pending = [(now, step_run_id) for step_run_id in ready_ids]
    while pending or _queued_in_tree(run.pk):
        if not pending:
            pending = [(time.monotonic(), step_run_id) for step_run_id in _queued_in_tree(run.pk)]
        pending.sort()
        due, step_run_id = pending.pop(0)
        time.sleep(max(0.0, due - time.monotonic()))
        ready = execute_step(step_run_id)
        now = time.monotonic()
        pending.extend((now, ready_id) for ready_id in ready)
        pending.extend((now + delay, later_id) for later_id, delay in ready.later)
    run.refresh_from_db()
    return run


def _queued_in_tree(run_id: int) -> list[int]:
    """The queued step runs of the run and of its child runs, however deep."""
    tree, new = {run_id}, {run_id}
    while new:
        new = set(Run.objects.filter(parent_step__run_id__in=new).values_list("pk", flat=True)) - tree
        tree |= new
    return list(StepRun.objects.filter(run_id__in=tree, status=Status.QUEUED).order_by("run_id", "position")
                .values_list("pk", flat=True))
