"""The thin Huey layer: one task per step run; enqueue what the engine says is ready."""

import datetime
import logging
import os
import threading
import time

from django.db import DatabaseError, close_old_connections, transaction
from django.dispatch import receiver
from django.utils import timezone
from huey.contrib.djhuey import HUEY, db_task
from huey.exceptions import TaskLockedException

from app import artifacts
from app.models import PipelineSnapshot, Run, Status, StepRun
from app.pipelines import dag_svg
from app.pipelines.registry import DEFAULT_QUEUE
from app.runs import children, engine, queues, store_check, supervisor
from app.runs.signals import run_finished

# A task keeps going down a chain itself (the first ready step) instead of a queue round
# trip per step, but hands over after this many steps or seconds so other runs get a turn.
CONTINUE_STEPS = 50
CONTINUE_SECONDS = 30

log = logging.getLogger(__name__)


_store_lock = threading.Lock()
_store_checked = False
_store_tried_at_start = False


def check_artifact_store():
    """Make sure, once per worker process, that its artifact store is the database's
    (app.runs.store_check). A worker on the wrong store, or one that cannot read its store,
    stops with one line, before it takes a step; raises DatabaseError while the database
    cannot answer."""
    global _store_checked
    if _store_checked:
        return
    with _store_lock:
        if _store_checked:
            return
        try:
            store_check.check()
        except DatabaseError:
            raise
        except Exception as exc:  # noqa: BLE001 — every other answer stops the worker
            message = str(exc) if isinstance(exc, store_check.StoreMismatch) else (
                f"cannot read the artifact store at {artifacts.where()}: {_describe(exc)}"
            )
            log.critical("%s", message)
            # From a worker thread: SystemExit would end this thread only, and huey logs and
            # ignores what a start-up hook raises. A step task that was taken stays queued
            # in the database, and the watchdog gives it to another worker.
            os._exit(2)
        _store_checked = True


@HUEY.on_startup()
def check_artifact_store_at_start():
    """At a worker's start-up, before the fork server: the first of its threads checks the
    store (the others' first steps wait for its answer in run_step). With the database gone
    at start the check is left to the first step, which backs off like any step while the
    database fails."""
    global _store_tried_at_start
    with _store_lock:
        if _store_tried_at_start:
            return
        _store_tried_at_start = True
    try:
        check_artifact_store()
    except DatabaseError as exc:
        log.warning("cannot check the artifact store yet: the database failed (%s); checking before the first step",
                    _describe(exc))
        close_old_connections()


@HUEY.on_startup()
def start_fork_server():
    """Each worker thread at start-up: have the step processes' fork server ready before
    the first step (idempotent; the first thread starts it)."""
    supervisor.start()


class Trouble:
    """Back-off while the database or the disk fails: one warning line per failure with the
    delay before the next try (1 s, doubling to at most 60 s), instead of a traceback a task."""

    def __init__(self):
        self.failures = 0
        self.lock = threading.Lock()

    def delay(self) -> float:
        with self.lock:
            self.failures += 1
            return min(60.0, 2.0 ** (self.failures - 1))

    def over(self):
        with self.lock:
            if self.failures:
                log.warning("the database and disk work again after %d failed tries", self.failures)
            self.failures = 0


trouble = Trouble()


def _describe(exc) -> str:
    return supervisor.describe_exception(exc).splitlines()[0][:300]


# The queue this process's worker serves (set by run_huey --queue; the default otherwise).
serving = {"queue": DEFAULT_QUEUE}


@db_task()
def run_step(step_run_id: int):
    deadline = time.monotonic() + CONTINUE_SECONDS
    current, claimed = step_run_id, None
    try:
        check_artifact_store()  # done at start unless the database was gone then
        for left in range(CONTINUE_STEPS - 1, -1, -1):
            # Going on down a chain: the success of this step claims the next one with it.
            go_on = left > 0 and time.monotonic() < deadline and not supervisor.stopping.is_set()
            ready = engine.execute_step(current, supervised=True, claimed=claimed,
                                        claim_next=serving["queue"] if go_on else None)
            schedule_retries(ready)
            if ready.claimed is not None:
                enqueue(ready)  # the others it made ready
                current, claimed = ready.claimed.pk, ready.claimed
                continue
            if not go_on or not ready or supervisor.stopping.is_set():
                break
            where = queues_of(ready)
            if where.get(ready[0]) != serving["queue"]:
                break  # the next step is another queue's
            enqueue(ready[1:], where)
            current, claimed, ready = ready[0], None, engine.Ready()
        enqueue(ready)
    except (DatabaseError, OSError) as exc:
        # The step that was being worked on is tried again later (a claim that did not
        # commit left it queued; one that did is the watchdog's).
        delay = trouble.delay()
        log.warning("step run %s: the database or disk failed (%s); trying it again in %g s", current,
                    _describe(exc), delay)
        close_old_connections()
        try:
            # This worker's queue: only its queue's steps run here (and the database is down).
            queues.task_on(serving["queue"], run_step).schedule((current,), delay=delay)
        except Exception as queue_exc:  # the queue is on the same disk: the watchdog finds it later
            log.warning("step run %s: could not queue it again either (%s)", current, _describe(queue_exc))
    else:
        trouble.over()


def queues_of(step_run_ids, known=None) -> dict[int, str]:
    """The queue of each step run: from `known` (or a Ready's own map) where given, the
    database for the rest."""
    queues = dict(getattr(step_run_ids, "queues", {}))
    queues.update(known or {})
    missing = [pk for pk in step_run_ids if pk not in queues]
    if missing:
        queues.update(StepRun.objects.filter(pk__in=missing).values_list("pk", "queue"))
    return queues


def enqueue(step_run_ids, known=None):
    """Put each step run on its queue (a step run that no longer exists is skipped)."""
    where = queues_of(step_run_ids, known)
    for step_run_id in step_run_ids:
        if step_run_id in where:
            queues.task_on(where[step_run_id], run_step)(step_run_id)


def schedule_retries(ready: engine.Ready):
    if ready.later:
        where = queues_of([pk for pk, _delay in ready.later])
        for step_run_id, delay in ready.later:
            if step_run_id in where:
                queues.task_on(where[step_run_id], run_step).schedule((step_run_id,), delay=delay)
    ready.later.clear()


def trigger(pipeline_name: str, params: dict | None = None, *, user=None, source="web", parameter_revision=None,
            rerun_of=None, tags=(), ignore_cache=False):
    """Start a run on the queue: its first steps are enqueued once the run is committed."""
    return start(engine.start_run(
        pipeline_name, params, user=user, source=source, parameter_revision=parameter_revision, rerun_of=rerun_of,
        tags=tags, ignore_cache=ignore_cache,
    ))


def start(created: tuple) -> Run:
    """Enqueue the ready steps of a new run (from the engine or app.runs.actions) once it is
    committed. One rule when the queue refuses them (its disk is full, Redis is down): the
    run fails at once, saying why, and nothing of it runs later behind the operator's back
    (the watchdog only re-queues steps still marked queued). `run.start_error` says why, for
    the caller to tell the operator; empty when the run was queued."""
    run, ready = created
    run.start_error = ""
    transaction.on_commit(lambda: _queue_first_steps(run, ready))
    return run


def _queue_first_steps(run: Run, ready):
    try:
        enqueue(ready)
    except Exception as exc:  # noqa: BLE001 — whatever the queue's storage raises
        run.start_error = _describe(exc)
        log.error("run %s: its first steps could not be queued (%s); the run is failed", run.pk, run.start_error)
        try:
            engine.fail_unqueued(
                run.pk, f"the task queue refused it ({run.start_error}); nothing of this run ran: "
                "start it again once the queue works",
            )
        except Exception as record_exc:  # noqa: BLE001 — the database too: the watchdog queues it later
            log.error("run %s: could not record that either (%s); the watchdog will queue it when it can",
                      run.pk, _describe(record_exc))


def stranded_steps() -> list[int]:
    """Step runs marked queued (or due for a retry) whose task was lost (a worker died
    between committing and enqueuing). Only looked for on queues that are empty, so a long
    backlog is not duplicated; a duplicate would be harmless anyway, since claims are
    conditional."""
    cutoff = timezone.now() - datetime.timedelta(minutes=2)
    # queued_at of a retrying step run is when its retry is due.
    candidates = StepRun.objects.filter(
        status__in=[Status.QUEUED, Status.RETRYING], queued_at__lt=cutoff
    ).values_list("pk", "queue")[:1000]
    empty = {}
    stranded = []
    for pk, queue in candidates:
        if queue not in empty:
            empty[queue] = not queues.huey_for(queue).pending_count()
        if empty[queue]:
            stranded.append(pk)
    return stranded


@receiver(run_finished, dispatch_uid="resume-parent-step")
def resume_parent(sender, run_id, status, **kwargs):
    """A child run closed: finish the step awaiting it (app.runs.children) and queue what
    that made ready in the parent run, once the close has committed."""
    ready = children.resume(run_id, status)
    if ready:
        transaction.on_commit(lambda: enqueue(ready))


@db_task()
def render_layout(snapshot_id: int):
    # The lock keeps repeated requests (a page polling while the layout is pending) from
    # running Graphviz several times at once for the same snapshot.
    try:
        with HUEY.lock_task(f"layout-{snapshot_id}"):
            store_layout(PipelineSnapshot.objects.get(pk=snapshot_id))
    except TaskLockedException:
        pass  # another worker is laying it out right now


def layout_for(snapshot: PipelineSnapshot) -> str | None:
    """The snapshot's DAG layout; small graphs are laid out now, large ones on the worker
    (None until it is ready), so a page never waits tens of seconds for Graphviz."""
    layout = current_layout(snapshot)
    if layout is not None:
        return layout
    if dag_svg.is_large(snapshot.graph):
        render_layout(snapshot.pk)
        return None
    return store_layout(snapshot)


def current_layout(snapshot: PipelineSnapshot) -> str | None:
    """The stored layout, unless it is missing or made by an older dag_svg."""
    if snapshot.layout_svg and snapshot.layout_version == dag_svg.LAYOUT_VERSION:
        return snapshot.layout_svg
    return None


def store_layout(snapshot: PipelineSnapshot) -> str:
    """Run Graphviz once for this snapshot and keep the result."""
    if current_layout(snapshot) is None:
        snapshot.layout_svg = dag_svg.render_layout(snapshot.graph)
        snapshot.layout_version = dag_svg.LAYOUT_VERSION
        PipelineSnapshot.objects.filter(pk=snapshot.pk).update(
            layout_svg=snapshot.layout_svg, layout_version=snapshot.layout_version
        )
    return snapshot.layout_svg
