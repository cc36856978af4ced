"""Concurrency limits (app/runs/admission.py): named pools (`@p.step(pool="gpu")`) and
`pipeline(max_active_runs=N)`, in their definitions, through the engine in-process, under
real workers (2 processes × 4 threads), and on the Pools page."""

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from app.models import AuditAction, AuditEvent, Pool, Run, Status, StepRun, WorkerHeartbeat
from app.pipelines.registry import registry
from app.runs import actions, admission, engine, statements, tasks
from app.web import live
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_run_files(remove_run_files):
    """Outputs of this test's runs go with it: a later test's run may get the same id."""

POOLS = "tests.fixtures.pool_pipelines"


def step_run(run, name) -> StepRun:
    return StepRun.objects.get(run=run, step_name=name)


def claim_and_hold(step_run_id) -> StepRun:
    """Claim a step run as a worker does and let it through the gates, without running it:
    it holds its slot until it is recorded."""
    held = statements.claim(step_run_id, timezone.now(), "elsewhere:1:t")
    limit = engine.snapshot_graph(held.run.snapshot_id, held.run.snapshot.source_hash).get("max_active_runs")
    assert admission.admit(held, limit) == ""
    return held


def two_in_a_pool(define, name="t_pair", pool="gpu", **options):
    pipe = define(name, **options)

    @pipe.step(pool=pool)
    def first(ctx):
        return 1

    @pipe.step(pool=pool)
    def second(ctx):
        return 2

    return pipe


# --- definitions ---------------------------------------------------------------------------


@pytest.mark.parametrize("pool", ["GPU", "", "-gpu", "a" * 51, 5, "gpu pool"])
def test_it_refuses_a_bad_pool_name_naming_the_step(define, pool):
    pipe = define("t_bad_pool")

    @pipe.step(pool=pool)
    def train(ctx):
        return 1

    problems = registry.problems()["t_bad_pool"]
    assert (f"step 'train': pool must be 1–50 lowercase letters, digits, _ or -, starting with a letter or "
            f"digit, not {pool!r}") in problems
    assert registry.get("t_bad_pool") is None


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "2"])
def test_it_refuses_a_bad_max_active_runs(define, limit):
    pipe = define("t_bad_limit", max_active_runs=limit)

    @pipe.step()
    def only(ctx):
        return 1

    assert registry.problems()["t_bad_limit"] == [
        f"max_active_runs must be a whole number ≥ 1, or None for no limit, not {limit!r}"
    ]


def test_pool_and_max_active_runs_enter_the_snapshot_only_when_set(define):
    plain = define("t_plain")
    gated = define("t_gated", max_active_runs=2)
    for pipe in (plain, gated):
        @pipe.step(pool="gpu" if pipe is gated else None)
        def train(ctx):
            return 1

    plain_body, gated_body = registry.get("t_plain").snapshot(), registry.get("t_gated").snapshot()
    assert "max_active_runs" not in plain_body and "pool" not in plain_body["steps"][0]
    assert gated_body["max_active_runs"] == 2 and gated_body["steps"][0]["pool"] == "gpu"
    # The example pipelines name no pool: their snapshots are as they were.
    for pipe in registry.pipelines().values():
        if pipe.name not in ("t_plain", "t_gated"):
            assert "max_active_runs" not in pipe.snapshot()
            assert not any("pool" in step for step in pipe.snapshot()["steps"])


def test_each_step_run_keeps_its_pool_items_and_retries_too(define):
    pipe = define("t_pooled_map")

    @pipe.step()
    def numbers(ctx):
        return [1, 2, 3]

    @pipe.map(over=numbers, pool="cpu")
    def square(ctx, numbers):
        if numbers == 3:
            raise ValueError("no")
        return numbers * numbers

    run = engine.run_inline(*engine.start_run("t_pooled_map"))

    assert run.status == Status.FAILED
    assert dict(run.step_runs.filter(map_of__isnull=True).values_list("step_name", "pool")) == {
        "numbers": "", "square": "cpu"}
    assert set(run.step_runs.filter(map_of__isnull=False).values_list("pool", flat=True)) == {"cpu"}
    retry, _ready = actions.retry_from_failure(run, None)
    assert step_run(retry, "square").pool == "cpu"
    assert set(retry.step_runs.filter(map_of__isnull=False).values_list("pool", flat=True)) == {"cpu"}


# --- the pool's gate, in-process ---------------------------------------------------------------


def test_a_step_that_finds_its_pool_full_is_put_back_saying_what_it_waits_for(define):
    two_in_a_pool(define)
    run, (first_id, second_id) = engine.start_run("t_pair")
    held = claim_and_hold(first_id)

    ready = engine.execute_step(second_id)

    assert list(ready) == [] and ready.later == [(second_id, settings.POOL_RECHECK_SECONDS)]
    waiting = StepRun.objects.get(pk=second_id)
    assert (waiting.status, waiting.attempt, waiting.started_at, waiting.worker, waiting.heartbeat_at) == (
        Status.QUEUED, 0, None, "", None)
    assert waiting.waiting_for == "a slot in pool gpu (1 of 1 in use)"
    assert Pool.objects.get(name="gpu").size == 1  # made with one slot on first use
    assert not waiting.attempts.exists()

    engine.record_success(held, "", ("", None))
    ready = engine.execute_step(second_id)

    waiting.refresh_from_db()
    assert (waiting.status, waiting.attempt, waiting.waiting_for) == (Status.SUCCEEDED, 1, "")
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED


def test_a_pool_with_room_lets_its_steps_start_and_ungated_steps_never_wait(define):
    Pool.objects.create(name="gpu", size=2)
    two_in_a_pool(define)

    run = engine.run_inline(*engine.start_run("t_pair"))

    assert run.status == Status.SUCCEEDED
    assert set(run.step_runs.values_list("waiting_for", flat=True)) == {""}


def test_a_chained_step_in_a_pool_is_queued_for_its_own_claim_not_taken_with_the_success(define):
    pipe = define("t_chain_pool")

    @pipe.step()
    def prepare(ctx):
        return 1

    @pipe.step(pool="gpu")
    def train(ctx, prepare):
        return prepare + 1

    run, (prepare_id,) = engine.start_run("t_chain_pool")
    train_id = step_run(run, "train").pk
    held = claim_and_hold(StepRun.objects.create(run=run, step_name="other", position=9, pool="gpu",
                                                 status=Status.QUEUED).pk)

    ready = engine.execute_step(prepare_id, claim_next="default")

    assert ready.claimed is None and list(ready) == [train_id]
    assert engine.execute_step(train_id).later == [(train_id, settings.POOL_RECHECK_SECONDS)]
    assert step_run(run, "train").waiting_for == "a slot in pool gpu (1 of 1 in use)"
    assert held.pool == "gpu"


def test_a_new_size_is_used_by_the_next_claims(define, operator_client):
    pipe = define("t_three")
    for name in ("a", "b", "c"):
        pipe.step(pool="gpu", name=name)(lambda ctx: 1)
    run, ids = engine.start_run("t_three")
    claim_and_hold(ids[0])
    assert engine.execute_step(ids[1]).later  # one slot: the second waits

    response = operator_client.post("/pools/gpu/", {"size": "2", "description": "two cards"})

    assert response.status_code == 302
    assert (Pool.objects.get(name="gpu").size, Pool.objects.get(name="gpu").description) == (2, "two cards")
    claim_and_hold(ids[1])  # its recheck: a slot now
    assert engine.execute_step(ids[2]).later
    assert StepRun.objects.get(pk=ids[2]).waiting_for == "a slot in pool gpu (2 of 2 in use)"


# --- the run slot, in-process ------------------------------------------------------------------


def one_at_a_time(define, name="t_serial", roots=1):
    pipe = define(name, max_active_runs=1)
    for i in range(roots):
        pipe.step(name=f"root_{i}")(lambda ctx: 1)
    return pipe


def test_a_run_beyond_max_active_runs_stays_queued_until_a_slot_is_free(define, operator_client):
    one_at_a_time(define)
    first, (first_step,) = engine.start_run("t_serial")
    second, (second_step,) = engine.start_run("t_serial")
    held = claim_and_hold(first_step)

    ready = engine.execute_step(second_step)

    assert ready.later == [(second_step, settings.POOL_RECHECK_SECONDS)]
    second.refresh_from_db()
    assert (second.status, second.started_at) == (Status.QUEUED, None)
    waiting = StepRun.objects.get(pk=second_step)
    assert (waiting.status, waiting.attempt, waiting.waiting_for) == (
        Status.QUEUED, 0, "a run slot: 1 of 1 runs of t_serial are active")
    page = operator_client.get(f"/runs/{second.pk}/").content.decode()
    assert 'id="run-waits-for">Waiting for a run slot: 1 of 1 runs of t_serial are active.' in page
    assert "waiting for a run slot: 1 of 1 runs of t_serial are active</div>" in page  # the step's row
    assert "Is a worker running?" not in page

    engine.record_success(held, "", ("", None))
    engine.execute_step(second_step)

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == second.status == Status.SUCCEEDED
    assert second.started_at >= first.finished_at


def test_a_second_first_step_claimed_before_the_check_waits_too_and_the_run_goes_back(define):
    one_at_a_time(define, roots=2)
    active, (active_step, _other) = engine.start_run("t_serial")
    claim_and_hold(active_step)
    late, (left, right) = engine.start_run("t_serial")
    # Both first steps of the late run are claimed before either is checked.
    left_claim = statements.claim(left, timezone.now(), "w:1:a")
    right_claim = statements.claim(right, timezone.now(), "w:1:b")
    assert (left_claim.starts_run, right_claim.starts_run) == (True, False)

    assert admission.admit(right_claim, 1) == "a run slot: 1 of 1 runs of t_serial are active"
    late.refresh_from_db()
    assert late.status == Status.RUNNING  # its left step is still claimed
    assert admission.admit(left_claim, 1) == "a run slot: 1 of 1 runs of t_serial are active"

    late.refresh_from_db()
    assert (late.status, late.started_at) == (Status.QUEUED, None)
    assert list(late.step_runs.values_list("status", "attempt")) == [(Status.QUEUED, 0), (Status.QUEUED, 0)]


def test_a_claim_whose_run_a_sibling_put_back_meanwhile_starts_it_again(define):
    one_at_a_time(define, roots=2)
    run, (left, right) = engine.start_run("t_serial")
    claimed = statements.claim(right, timezone.now(), "w:1:b")
    # As on PostgreSQL when a sibling's refusal commits just after this claim did.
    Run.objects.filter(pk=run.pk).update(status=Status.QUEUED, started_at=None)

    assert admission.admit(claimed, 1) == ""

    run.refresh_from_db()
    assert run.status == Status.RUNNING and run.started_at == StepRun.objects.get(pk=right).started_at


def test_an_active_run_keeps_its_slot_for_its_later_steps(define):
    pipe = define("t_serial_chain", max_active_runs=1)

    @pipe.step()
    def first(ctx):
        return 1

    @pipe.step(after=[first])
    def second(ctx):
        return 2

    older, (older_first,) = engine.start_run("t_serial_chain")
    newer, (newer_first,) = engine.start_run("t_serial_chain")
    held = claim_and_hold(older_first)
    # A claim of the newer run's first step, not checked yet: it counts as running meanwhile.
    statements.claim(newer_first, timezone.now(), "w:1:n")

    (second_id,) = engine.record_success(held, "", ("", None))
    engine.execute_step(second_id)

    older.refresh_from_db()
    assert older.status == Status.SUCCEEDED


def test_a_poll_sees_what_a_waiting_step_waits_for_change():
    waiting = [live.step_code(Status.QUEUED, 0, None, f"a slot in pool gpu ({n} of 2 in use)") for n in (1, 2)]

    assert len({live.step_code(Status.QUEUED, 0), *waiting}) == 3
    assert live.decode(live.encode(waiting)) == waiting


# --- real workers -------------------------------------------------------------------------------


@pytest.fixture
def pool_workers(start_worker):
    """Two worker processes of four threads each, with the pool pipelines loaded (here too)."""
    registry.discover(POOLS)

    def start():
        for _ in range(2):  # of start_worker's four threads (HUEY_WORKERS=4) each
            start_worker(PIPELINES_PACKAGE=POOLS, POOL_RECHECK_SECONDS="0.2", WORKER_BEAT_SECONDS="0.3")
        # Both are up before anything is queued: both take steps.
        wait_for(lambda: WorkerHeartbeat.objects.count() == 2, timeout=60, message="two workers' heartbeats")

    try:
        yield start
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)


def most_at_once(intervals) -> int:
    """The most intervals (start, end) that overlap at any moment; one ending when another
    starts does not overlap it."""
    events = sorted([(end, -1) for _start, end in intervals] + [(start, 1) for start, _end in intervals])
    now = most = 0
    for _moment, change in events:
        now += change
        most = max(most, now)
    return most


def finished(run):
    run = Run.objects.get(pk=run.pk)
    return run if run.is_finished else None


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_pools_hold_their_size_under_2_workers_x_4_threads(pool_workers):
    Pool.objects.create(name="gpu", size=2)
    pool_workers()
    run = tasks.trigger("t_gpu_pool", source="cli")

    run = wait_for(lambda: finished(run), timeout=120, message="the pool run to finish")

    assert run.status == Status.SUCCEEDED
    steps = list(run.step_runs.all())
    assert len(steps) == 12 and {s.status for s in steps} == {Status.SUCCEEDED}
    assert {s.attempt for s in steps} == {1} and {s.waiting_for for s in steps} == {""}
    assert most_at_once([(s.started_at, s.finished_at) for s in steps]) == 2  # never 3, and 2 at a time
    assert len({s.worker.split(":")[1] for s in steps}) == 2  # both worker processes took steps


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_max_active_runs_runs_them_one_at_a_time(pool_workers):
    pool_workers()
    runs = [tasks.trigger("t_one_at_a_time", source="cli") for _ in range(3)]

    runs = [wait_for(lambda run=run: finished(run), timeout=120, message=f"run {run.pk} to finish") for run in runs]

    assert [run.status for run in runs] == [Status.SUCCEEDED] * 3
    # Active: from its first step let through to its end (its started_at is within a few ms
    # of that: see app.runs.admission).
    active = [(min(run.step_runs.values_list("started_at", flat=True)), run.finished_at) for run in runs]
    assert most_at_once(active) == 1
    for run in runs:
        assert {s.attempt for s in run.step_runs.all()} == {1}
        assert max(s.finished_at for s in run.step_runs.all()) <= run.finished_at


# --- the Pools page -------------------------------------------------------------------------------


@pytest.fixture
def pooled(define):
    """A loaded pipeline with a step in pool gpu, one of its runs with a step running in it
    and one waiting for it."""
    two_in_a_pool(define)
    run, (first_id, second_id) = engine.start_run("t_pair")
    claim_and_hold(first_id)
    engine.execute_step(second_id)
    return run


def test_it_lists_each_pool_with_what_runs_in_it_and_what_waits(operator_client, pooled):
    Pool.objects.create(name="licences", size=3, description="Three seats of the solver")

    response = operator_client.get("/pools/")

    assert response.status_code == 200
    page = response.content.decode()
    gpu = page[page.index('id="pool-gpu"'):page.index('id="pool-licences"')]
    assert "1 of 1 in use" in gpu and "1 step waiting" in gpu
    assert 'href="/pipelines/t_pair/">t_pair</a>' in gpu
    assert "<code>first</code>" in gpu and "<code>second</code>" in gpu
    licences = page[page.index('id="pool-licences"'):]
    assert "0 of 3 in use" in licences and "Three seats of the solver" in licences and "no loaded pipeline" in licences
    assert 'href="/pools/" aria-current="page">Pools</a>' in page


def test_it_says_a_pool_never_set_has_one_slot(operator_client, define):
    two_in_a_pool(define, pool="tpu")

    page = operator_client.get("/pools/").content.decode()

    assert "size never set: one slot" in page and not Pool.objects.exists()


def test_the_step_page_says_what_a_waiting_step_waits_for(operator_client, pooled):
    page = operator_client.get(f"/runs/{pooled.pk}/steps/second/").content.decode()

    assert 'id="waiting-for">Waiting for a slot in pool gpu (1 of 1 in use).' in page
    assert 'href="/pools/#pool-gpu"><code>gpu</code></a>' in page


def test_it_sets_a_pools_size_and_description_audited(operator_client, operator, pooled):
    response = operator_client.post("/pools/gpu/", {"size": "4", "description": "Four A100s"}, follow=True)

    assert response.redirect_chain == [("/pools/", 302)]
    assert "Pool gpu has 4 slots now" in response.content.decode()
    pool = Pool.objects.get(name="gpu")
    assert (pool.size, pool.description) == (4, "Four A100s")
    event = AuditEvent.objects.get()
    assert (event.action, event.user, event.target_label) == (AuditAction.ADMIN_CHANGE, operator, "gpu (4)")
    assert event.details == {"field": "pool", "diff": {"changed": {"size": [1, 4], "description": ["", "Four A100s"]}}}


@pytest.mark.parametrize("size, message", [
    ("0", "A pool has 1 to 1,000 slots, not 0."),
    ("1001", "A pool has 1 to 1,000 slots, not 1,001."),
    ("-3", "A pool has 1 to 1,000 slots, not -3."),
    ("two", "Enter a whole number."),
    ("", "This field is required."),
])
def test_it_refuses_a_bad_size_and_changes_nothing(operator_client, pooled, size, message):
    Pool.objects.filter(name="gpu").update(size=1, description="one card")

    response = operator_client.post("/pools/gpu/", {"size": size, "description": "more"})

    assert response.status_code == 422
    page = response.content.decode()
    assert message in page and 'aria-invalid="true"' in page
    assert (Pool.objects.get(name="gpu").size, Pool.objects.get(name="gpu").description) == (1, "one card")
    assert not AuditEvent.objects.exists()


def test_it_refuses_a_pool_no_pipeline_names_and_no_row_has(operator_client, pooled):
    assert operator_client.post("/pools/nowhere/", {"size": "2"}).status_code == 404
    assert not Pool.objects.filter(name="nowhere").exists()


def test_a_stakeholder_may_neither_see_nor_set_pools(stakeholder_client, pooled):
    assert stakeholder_client.get("/pools/").status_code == 403
    assert stakeholder_client.post("/pools/gpu/", {"size": "5"}).status_code == 403
    assert Pool.objects.get(name="gpu").size == 1 and not AuditEvent.objects.exists()


def test_anonymous_users_go_to_the_login_page(client, pooled):
    for response in (client.get("/pools/"), client.post("/pools/gpu/", {"size": "5"})):
        assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert Pool.objects.get(name="gpu").size == 1


def test_wrong_methods_are_refused(operator_client, pooled):
    assert operator_client.post("/pools/").status_code == 405
    assert operator_client.get("/pools/gpu/").status_code == 405


def test_a_post_without_a_csrf_token_is_refused(operator, pooled):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)

    assert client.post("/pools/gpu/", {"size": "5"}).status_code == 403
    assert Pool.objects.get(name="gpu").size == 1


def test_the_admin_checks_a_pools_name_and_size(admin, client):
    client.force_login(admin)

    response = client.post("/admin/app/pool/add/", {"name": "GPU!", "size": "0", "description": ""})

    assert response.status_code == 200
    page = response.content.decode()
    assert "A pool must be 1–50 lowercase letters" in page and "A pool has 1 to 1,000 slots, not 0." in page
    assert not Pool.objects.exists()
