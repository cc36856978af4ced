"""Concurrency limits: named pools (`@p.step(pool="gpu")`, at most the pool's size of its
steps running at once, over all workers) and a pipeline's `max_active_runs` (at most that
many of its runs active at once), checked when a worker claims a step run.

Claim first, check after. The claim (app.runs.statements.claim) is the one statement every
step pays for, and most steps have no limit at all. Checking before it would cost every step
a query, or a lock, to learn that it has none. Instead the claim stays one statement, and
its RETURNING also gives the step run's pool and whether the claim started its run. The
engine knows from that and the run's snapshot (cached per process) whether a gate applies,
without asking the database again. Only a gated claim opens a transaction here. A step that
may not start yet is put back as the claim found it: queued, its attempt not counted, no
worker, no start time (as app.runs.engine does for a step whose code is elsewhere). It says
what it waits for (`waiting_for`, shown on the run and step pages), and its task comes back
POOL_RECHECK_SECONDS later. A step that gets its slot starts then: its start time is the
moment it was let through, after the check, so the start and finish times of a pool's steps
never show more of them at once than its size. Measured with bench/step_overhead.py --shape
chain --n 100 before and after this module: see docs/benchmarks.md ("Concurrency limits").

Pools: why a claimed-then-undone step cannot overrun one. A claim commits before its check
runs, so a step running in a pool is seen by every check of that pool that comes after it.
The checks of one pool are serialised: on PostgreSQL its Pool row is locked, and on SQLite
transactions are IMMEDIATE and hold the whole database already. A refused claim is undone in
the same transaction as its check. So two claims never both see room for the same slot.
Claims made at the same moment can refuse each other while each is counted, and then both
come back a little later; they never admit too many.

Run slots (`max_active_runs=N`). A run is active while it is running: from its first step's
claim (queued → running) until it finishes. Runs get their slots in the order they were
created: a claim of a step of run R waits while N runs of the pipeline created before R have
not finished (queued or running). Every claim of such a pipeline's steps is checked, not only
a run's first, since a second first step of a run can be claimed between the first one's
claim and its check, and must not run if the first is refused. Counting only the other
running runs at a run's first claim would let that second step through, and lets two runs
claimed at once refuse each other. The rule needs neither timestamps nor a lock to be safe.
Take the newest of any set of runs let through at once: all the others were created before
it and had not finished when it was checked, so there were fewer than N of them, and the set
has at most N. It also keeps an active run's slot: only older runs count against it, and
they can only finish. A queued run created earlier is ahead of later ones even if nothing of
it can start yet; cancel it to let them through. The checks of one pipeline are still
serialised, on PostgreSQL by a transaction-level advisory lock on its name. That lock is for
the run's status, not for the count. A refused claim puts its run back to queued (no start
time) when nothing of it is going: no other step running or awaiting items, none finished
since it started. A sibling claimed just before that finds its run queued again when its own
check comes, and starts it again there.

A run that gets its first slot starts then: its start time is when its first step was let
through (when two of its first steps are claimed at the same moment, it may be the other
one's, a few milliseconds apart). Steps that go on down a chain (claimed with their
predecessor's success) belong to an active run and are not in a pool: a step in a pool is
never chained (app.runs.statements._upstream_done).
"""

from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from app.models import Pool, Run, Status, StepRun

# How what a step waiting for a pool slot says begins (the Pools page counts them by it).
POOL_WAIT = "a slot in pool "
# The first key of the advisory locks taken here, so they cannot meet another part's locks.
ADVISORY_CLASS = 4_242


def admit(step_run: StepRun, max_active_runs: int | None) -> str:
    """Whether the claimed `step_run` (app.runs.statements.claim: it has its `pool` and
    `starts_run`) may start now. Returns "" if it may (it starts now: see the module's
    docstring), else what it waits for ("a slot in pool gpu (2 of 2 in use)"); then its
    claim is undone, and its run put back to queued if the run slot was refused and nothing
    of it is going. Checks the run slot first (`max_active_runs`, None for no limit), then
    the pool. One transaction."""
    with transaction.atomic():
        why = _run_slot(step_run, max_active_runs) if max_active_runs is not None else ""
        if why:
            _put_back(step_run, why, run_too=True)
            return why
        # A run admitted to a run slot keeps it while one of its steps waits for a pool.
        why = _pool_slot(step_run) if step_run.pool else ""
        if why:
            _put_back(step_run, why, run_too=False)
        else:
            _start(step_run, limited=max_active_runs is not None)
    return why


def lock_pool(name: str) -> Pool:
    """The pool's row, locked until the transaction ends (created with one slot if there is
    none yet: a pool no row names has one slot)."""
    pool, _created = Pool.objects.select_for_update().get_or_create(name=name, defaults={"size": 1})
    return pool


def _pool_slot(step_run: StepRun) -> str:
    pool = lock_pool(step_run.pool)
    # This claim included (it is committed), counted with the partial index on (pool, status).
    running = StepRun.objects.filter(pool=pool.name, status=Status.RUNNING).count()
    if running <= pool.size:
        return ""
    return f"{POOL_WAIT}{pool.name} ({running - 1} of {pool.size} in use)"


def _lock_pipeline(pipeline_name: str):
    """Serialise the run-slot checks of one pipeline until the transaction ends. PostgreSQL:
    an advisory lock on the name's hash (a collision only serialises two pipelines' checks,
    never lets one through). SQLite: the IMMEDIATE transaction holds the database already."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [ADVISORY_CLASS, pipeline_name])


def _run_slot(step_run: StepRun, limit: int) -> str:
    run = step_run.run
    _lock_pipeline(run.pipeline_name)
    status = Run.objects.values_list("status", flat=True).get(pk=run.pk)
    if status == Status.QUEUED:
        # A sibling's refusal put it back after this claim was made: this claim starts it again.
        Run.objects.filter(pk=run.pk, status=Status.QUEUED).update(status=Status.RUNNING,
                                                                   started_at=step_run.started_at)
        step_run.starts_run = True
    elif status != Status.RUNNING:
        return ""  # it finished meanwhile (cancelled): nothing to hold a slot for
    ahead = Run.objects.filter(pipeline_name=run.pipeline_name, pk__lt=run.pk,
                               status__in=[Status.QUEUED, Status.RUNNING]).aggregate(
        running=Count("pk", filter=Q(status=Status.RUNNING)), queued=Count("pk", filter=Q(status=Status.QUEUED)))
    if ahead["running"] + ahead["queued"] < limit:
        return ""
    active = Run.objects.filter(pipeline_name=run.pipeline_name, status=Status.RUNNING).exclude(pk=run.pk).count()
    waits = f", {ahead['queued']} earlier run{' waits' if ahead['queued'] == 1 else 's wait'} first" \
        if ahead["queued"] else ""
    return f"a run slot: {active} of {limit} runs of {run.pipeline_name} are active{waits}"


def _start(step_run: StepRun, limited: bool):
    """The step got its slot(s): it starts now. So does its run if this claim started it,
    or, for a pipeline with run slots, if nothing else of the run is going yet."""
    now = timezone.now()
    StepRun.objects.filter(pk=step_run.pk, status=Status.RUNNING, attempt=step_run.attempt).update(
        started_at=now, heartbeat_at=now, waiting_for=""
    )
    step_run.started_at = now
    run = Run.objects.filter(pk=step_run.run_id, status=Status.RUNNING)
    if step_run.starts_run:
        run.update(started_at=now)
    elif limited:
        run.filter(~Exists(_going(step_run))).update(started_at=now)


def _going(step_run: StepRun):
    """The run's other steps that are going: running, awaiting their items, or finished
    since the run started."""
    return StepRun.objects.filter(run_id=OuterRef("pk")).exclude(pk=step_run.pk).filter(
        Q(status__in=[Status.RUNNING, Status.AWAITING]) | Q(finished_at__gte=OuterRef("started_at"))
    )


def _put_back(step_run: StepRun, why: str, *, run_too: bool):
    """Undo the claim: the step is queued again as it was, its attempt not counted, saying
    what it waits for. `run_too`: the run is put back to queued too if nothing of it is going
    (no other step running or awaiting, none finished since it started)."""
    # queued_at is now: the watchdog re-queues a step queued for minutes whose queue is
    # empty (app.runs.tasks.stranded_steps); this one's task is scheduled already.
    undone = StepRun.objects.filter(pk=step_run.pk, status=Status.RUNNING, attempt=step_run.attempt).update(
        status=Status.QUEUED, attempt=step_run.attempt - 1, queued_at=timezone.now(), started_at=None, worker="",
        heartbeat_at=None, waiting_for=why[:200],
    )
    if not undone or not run_too:
        return
    Run.objects.filter(pk=step_run.run_id, status=Status.RUNNING).filter(~Exists(_going(step_run))).update(
        status=Status.QUEUED, started_at=None
    )
