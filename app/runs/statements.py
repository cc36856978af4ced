"""The engine's per-step statements, written as SQL.

Measured (bench/step_overhead.py): building an ORM query costs ~0.4 ms of CPU against
~0.02 ms to run it on SQLite, and a step needs seven of them; these few statements, with
RETURNING (SQLite ≥ 3.35, PostgreSQL), are what makes the per-step overhead small. Every
statement is still a conditional update, exactly like the ORM version it replaces.

On PostgreSQL every statement is a network round trip (~0.2 ms, more under load), so the claim
and the record of a success are one statement each there: the updates are chained in a `WITH`
(data-modifying common table expressions, which SQLite does not have). A claim is then a
single autocommitted statement; a success is one statement in a transaction that also closes
the run when it was the last step.

A claim also says what app.runs.admission needs to decide whether the step may start now (a
concurrency pool, a run slot) without another query: the step run's pool and whether the claim
started its run. Most steps have neither gate, and pay nothing more than two returned columns.
"""

from django.db import connection, models, transaction

from app.models import PipelineSnapshot, Run, Status, StepRun
from app.runs.signals import run_finished

STEP = StepRun._meta.db_table
RUN = Run._meta.db_table
SNAPSHOT = PipelineSnapshot._meta.db_table


def _when(moment):
    return connection.ops.adapt_datetimefield_value(moment)


def claim(step_run_id: int, now, worker: str) -> StepRun | None:
    """queued (or retrying) → running for this step run (and the run queued → running);
    None if someone else got it first. Commits. The step run returned has its `pool`, and
    `starts_run`: whether this claim moved its run from queued to running (what
    app.runs.admission needs to know)."""
    if connection.vendor == "postgresql" and connection.get_autocommit():
        row = _claim_in_one_statement(step_run_id, now, worker)
    else:
        with transaction.atomic():
            row = _claim_in_steps(step_run_id, now, worker)
    if row is None:
        return None
    run_id, step_name, attempt, pipeline_name, params, snapshot_id, source_hash, pool, starts_run, skipped = row
    params = Run._meta.get_field("params").from_db_value(params, None, connection)
    step_run = claimed((step_run_id, run_id, step_name, attempt, pipeline_name, params, snapshot_id, source_hash, now,
                        worker, skipped))
    step_run.pool, step_run.starts_run = pool, bool(starts_run)
    return step_run


def portable(step_run: StepRun) -> tuple:
    """What `claimed` needs to rebuild a claimed step run: plain values, cheap to send to a
    child process (a pickled model instance measured 0.3 ms a step)."""
    run = step_run.run
    return (
        step_run.pk, run.pk, step_run.step_name, step_run.attempt, run.pipeline_name, run.params,
        run.snapshot_id, run.snapshot.source_hash, step_run.started_at, step_run.worker, step_run.upstream_skipped,
    )


def claimed(fields: tuple) -> StepRun:
    """The running step run (with its run and snapshot, unsaved instances) from `portable`'s
    values (`upstream_skipped` last, 0 when not given: how many steps above it were skipped)."""
    pk, run_id, step_name, attempt, pipeline_name, params, snapshot_id, source_hash, started_at, worker, *more = fields
    snapshot = PipelineSnapshot(pk=snapshot_id, pipeline_name=pipeline_name, source_hash=source_hash)
    run = Run(pk=run_id, pipeline_name=pipeline_name, status=Status.RUNNING, params=params, snapshot=snapshot)
    step_run = StepRun(pk=pk, run=run, step_name=step_name, attempt=attempt, status=Status.RUNNING,
                       started_at=started_at, worker=worker, upstream_skipped=more[0] if more else 0)
    step_run.starts_run = False  # see claim
    return step_run


def _claim_in_one_statement(step_run_id, now, worker):
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH claimed AS ("
            f" UPDATE {STEP} SET status = %s, started_at = %s, finished_at = NULL, heartbeat_at = %s,"
            f" attempt = attempt + 1, worker = %s WHERE id = %s AND status IN (%s, %s)"
            f" RETURNING run_id, step_name, attempt, pool, upstream_skipped"
            f"), started AS ("
            f" UPDATE {RUN} SET status = %s, started_at = %s WHERE id IN (SELECT run_id FROM claimed) AND status = %s"
            f" RETURNING id"
            f") SELECT c.run_id, c.step_name, c.attempt, r.pipeline_name, r.params, r.snapshot_id, s.source_hash,"
            f" c.pool, EXISTS (SELECT 1 FROM started), c.upstream_skipped"
            f" FROM claimed c JOIN {RUN} r ON r.id = c.run_id JOIN {SNAPSHOT} s ON s.id = r.snapshot_id",
            [Status.RUNNING, _when(now), _when(now), worker, step_run_id, Status.QUEUED, Status.RETRYING,
             Status.RUNNING, _when(now), Status.QUEUED],
        )
        return cursor.fetchone()


def _claim_in_steps(step_run_id, now, worker):
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {STEP} SET status = %s, started_at = %s, finished_at = NULL, heartbeat_at = %s,"
            " attempt = attempt + 1, worker = %s WHERE id = %s AND status IN (%s, %s)"
            " RETURNING run_id, step_name, attempt, pool, upstream_skipped",
            [Status.RUNNING, _when(now), _when(now), worker, step_run_id, Status.QUEUED, Status.RETRYING],
        )
        row = cursor.fetchone()
        if row is None:
            return None
        run_id, step_name, attempt, pool, upstream_skipped = row
        cursor.execute(
            f"SELECT r.pipeline_name, r.status, r.params, r.snapshot_id, s.source_hash"
            f" FROM {RUN} r JOIN {SNAPSHOT} s ON s.id = r.snapshot_id WHERE r.id = %s",
            [run_id],
        )
        pipeline_name, run_status, params, snapshot_id, source_hash = cursor.fetchone()
        starts_run = False
        if run_status == Status.QUEUED:
            cursor.execute(
                f"UPDATE {RUN} SET status = %s, started_at = %s WHERE id = %s AND status = %s",
                [Status.RUNNING, _when(now), run_id, Status.QUEUED],
            )
            starts_run = cursor.rowcount == 1
    return run_id, step_name, attempt, pipeline_name, params, snapshot_id, source_hash, pool, starts_run, upstream_skipped


def record_success(step_run: StepRun, now, log: str, output: tuple, successors, claim=None,
                   status=Status.SUCCEEDED) -> tuple | None:
    """running → succeeded for this attempt, counted on the run, and each successor told one
    more upstream is done (see upstream_done); call inside a transaction, unless
    `success_is_one_statement()` (then it is atomic by itself). Returns
    (finished, total, [(id, queue) queued], claimed), or None if the attempt no longer owns
    the step. `output`: (output_path, output_inline), as app.artifacts.save_output returns them,
    and optionally (load_seconds, save_seconds) after them.

    `claim`: (queue, worker) of a task that goes on down a chain: the first successor, if
    this success makes it ready, it is on `queue` and in no concurrency pool, is claimed for
    `worker` by the same statement instead of being queued (a claim is a round trip of its
    own otherwise); `claimed` is then its (id, step_name, attempt), else None.

    `status`: skipped is recorded the same way (a skipped step is done: what waits for it
    runs, or is skipped in turn when it runs: app.runs.mapping.load_inputs)."""
    if connection.vendor == "postgresql":
        return _record_success_in_one_statement(step_run, now, log, output, successors, claim, status)
    if not mark_succeeded(step_run, now, log, output, status):
        return None
    finished, total = count_finished(step_run.run_id, 1)
    queued, claimed = upstream_done(step_run.run_id, successors, now, claim) if successors else ([], None)
    return finished, total, queued, claimed


def success_is_one_statement() -> bool:
    """Whether record_success is a single statement here (PostgreSQL), so that it is atomic
    without a transaction around it."""
    return connection.vendor == "postgresql"


def _record_success_in_one_statement(step_run, now, log, output, successors, claim, status):
    # The final SELECT reads `counted` before `next`, so the run row is locked before any
    # successor row, as in the statement-by-statement version: siblings finishing together
    # queue up on the run row and cannot deadlock on each other's successors.
    next_sql, next_params = _upstream_done(step_run.run_id, list(successors) or [""], now, claim)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH done AS ("
            f" UPDATE {STEP} SET status = %s, finished_at = %s, log = %s, output_path = %s, output_inline = %s,"
            f" load_seconds = %s, save_seconds = %s,"
            f" error = '', code_wait_since = NULL WHERE id = %s AND status = %s AND attempt = %s RETURNING run_id"
            f"), counted AS ("
            f" UPDATE {RUN} SET steps_finished = steps_finished + 1 WHERE id IN (SELECT run_id FROM done)"
            f" RETURNING steps_finished, steps_total"
            f"), next AS ("
            f" {next_sql} AND EXISTS (SELECT 1 FROM done) RETURNING id, queue, status, step_name, attempt"
            f") SELECT 0, steps_finished::bigint, steps_total::bigint, '' FROM counted"
            f" UNION ALL SELECT 1, id, 0, queue FROM next WHERE status = %s"
            f" UNION ALL SELECT 2, id, attempt::bigint, step_name FROM next WHERE status = %s",
            [status, _when(now), log, *_columns(output), step_run.pk, Status.RUNNING, step_run.attempt,
             *next_params, Status.QUEUED, Status.RUNNING],
        )
        rows = cursor.fetchall()
    counts = [row for row in rows if row[0] == 0]
    if not counts:
        return None
    _kind, finished, total, _queue = counts[0]
    queued = sorted((row[1], row[3]) for row in rows if row[0] == 1)
    claimed = next(((row[1], row[3], row[2]) for row in rows if row[0] == 2), None)
    return finished, total, queued, claimed


def mark_succeeded(step_run: StepRun, now, log: str, output: tuple, status=Status.SUCCEEDED) -> bool:
    """running → succeeded (or skipped), only if this attempt still owns the step run."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {STEP} SET status = %s, finished_at = %s, log = %s, output_path = %s, output_inline = %s,"
            " load_seconds = %s, save_seconds = %s, error = '', code_wait_since = NULL"
            " WHERE id = %s AND status = %s AND attempt = %s",
            [status, _when(now), log, *_columns(output), step_run.pk, Status.RUNNING, step_run.attempt],
        )
        return cursor.rowcount == 1


def _columns(output: tuple) -> tuple:
    """output_path, output_inline, load_seconds, save_seconds: the times are None when not given."""
    return (*output, None, None)[:4]


def count_finished(run_id: int, count: int) -> tuple[int, int]:
    """Add to the run's finished-step counter; returns (finished, total). On PostgreSQL the
    UPDATE also locks the run row until commit, which serialises sibling steps' bookkeeping."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {RUN} SET steps_finished = steps_finished + %s WHERE id = %s RETURNING steps_finished, steps_total",
            [count, run_id],
        )
        return cursor.fetchone()


def _upstream_done(run_id: int, names: list, now, claim=None) -> tuple[str, list]:
    """The UPDATE (and its parameters) that counts one more upstream done for the steps
    `names` and queues the pending ones with none left — or, with `claim` (queue, worker),
    claims the first of them instead when it is on that queue (see record_success).

    Upstream-failed steps are counted too, so `upstream_left` is always the number of
    upstream steps that have not succeeded: a step marked succeeded by hand can re-open
    them (app.runs.actions.mark_step). It also means a success whose statement began before
    such a re-opening committed still finds the re-opened row (PostgreSQL re-checks the
    WHERE on the row's new version), so its count is never lost. Every SET expression reads
    the row as it was (both databases), so "ready" means the same in each of them."""
    ready, ready_params = "upstream_left = 1 AND status = %s", [Status.PENDING]
    sets, params = ["upstream_left = upstream_left - 1"], []
    if claim:
        queue, worker = claim
        # Not a step in a concurrency pool: it is queued, and its claim checks for a slot
        # (app.runs.admission). A run that goes on down a chain has its run slot already.
        # Not a step in a pool (its claim is checked: app.runs.admission), nor one below a
        # skipped step (its claim says so: it may be skipped in turn, app.runs.mapping).
        taken = f"{ready} AND step_name = %s AND queue = %s AND pool = '' AND upstream_skipped = 0"
        taken_params = [*ready_params, names[0], queue]
        sets.append(f"status = CASE WHEN {taken} THEN %s WHEN {ready} THEN %s ELSE status END")
        params += [*taken_params, Status.RUNNING, *ready_params, Status.QUEUED]
        # What a claim sets (see claim), for the step it takes.
        for column, value in (("started_at", _when(now)), ("heartbeat_at", _when(now)), ("worker", worker)):
            sets.append(f"{column} = CASE WHEN {taken} THEN %s ELSE {column} END")
            params += [*taken_params, value]
        sets.append(f"attempt = CASE WHEN {taken} THEN attempt + 1 ELSE attempt END")
        sets.append(f"finished_at = CASE WHEN {taken} THEN NULL ELSE finished_at END")
        params += [*taken_params, *taken_params]
    else:
        sets.append(f"status = CASE WHEN {ready} THEN %s ELSE status END")
        params += [*ready_params, Status.QUEUED]
    sets.append(f"queued_at = CASE WHEN {ready} THEN %s ELSE queued_at END")
    params += [*ready_params, _when(now)]
    marks = ", ".join(["%s"] * len(names))
    sql = (f"UPDATE {STEP} SET {', '.join(sets)}"
           f" WHERE run_id = %s AND status IN (%s, %s) AND upstream_left > 0 AND step_name IN ({marks})")
    return sql, [*params, run_id, Status.PENDING, Status.UPSTREAM_FAILED, *names]


def upstream_done(run_id: int, step_names, now, claim=None) -> tuple[list[tuple[int, str]], tuple | None]:
    """One more upstream step of each of these steps succeeded: count it, and queue those
    with none left (pending → queued); returns (id, queue) of those queued, and the
    (id, step_name, attempt) of the one claimed with `claim` (see record_success), or None.
    One statement whatever the fan-in: the steps' own rows, never their siblings'."""
    sql, params = _upstream_done(run_id, list(step_names), now, claim)
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING id, queue, status, step_name, attempt", params)
        rows = cursor.fetchall()
    queued = sorted((pk, queue) for pk, queue, status, _name, _attempt in rows if status == Status.QUEUED)
    claimed = next(((pk, name, attempt) for pk, _queue, status, name, attempt in rows if status == Status.RUNNING),
                   None)
    return queued, claimed


def lock_run(run_id: int) -> Run:
    """The run row, locked until the transaction ends (PostgreSQL; SQLite's IMMEDIATE
    transactions hold the whole database already). Taken before reading other step runs of
    the run to decide what they become: a step failing and an operator marking a step by
    hand then see each other's changes instead of deciding from what was there before."""
    return Run.objects.select_for_update().get(pk=run_id)


def finish_steps(run_id: int, count: int, now):
    """Count `count` more finished steps; close the run when that was the last of them."""
    finished, total = count_finished(run_id, count)
    if finished >= total:
        close_run(run_id, now)


def close_finished_runs(now) -> list[int]:
    """Close the runs still marked running whose steps have all finished: a success recorded
    on its own (a chain, PostgreSQL) whose worker died before it closed the run. Returns
    their ids."""
    unclosed = Run.objects.filter(status=Status.RUNNING, steps_finished__gte=models.F("steps_total"),
                                  steps_total__gt=0).values_list("pk", flat=True)[:100]
    return [run_id for run_id in unclosed if close_if_finished(run_id, now)]


def close_if_finished(run_id: int, now) -> bool:
    """Close the run if it is still running with all its steps finished, re-read under its
    lock in a transaction of its own: of a worker and a watchdog closing it at the same
    moment, one does (and announces it), the other finds it closed."""
    with transaction.atomic():
        run = lock_run(run_id)
        if run.status != Status.RUNNING or run.steps_finished < run.steps_total:
            return False
        close_run(run_id, now)
    return True


def close_run(run_id: int, now):
    """All steps have finished: the run is cancelled if an operator asked for it, failed if
    any step failed or was skipped for it, else succeeded. Announces it (run_finished)."""
    run = Run.objects.only("cancel_requested_at").get(pk=run_id)
    if run.cancel_requested_at:
        status = Status.CANCELLED
    elif StepRun.objects.filter(run_id=run_id, status__in=[Status.FAILED, Status.UPSTREAM_FAILED]).exists():
        status = Status.FAILED
    else:
        status = Status.SUCCEEDED
    Run.objects.filter(pk=run_id).update(status=status, finished_at=now)
    # In this transaction: what listeners record (a retrain verdict) commits with the run.
    run_finished.send(sender=Run, run_id=run_id, status=status)
