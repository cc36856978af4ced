"""Mapped steps (app/runs/mapping.py): `@p.map(over=...)` runs one step run per item of an
upstream output, through the engine (run_inline) and a real worker."""

import os
import signal
from pathlib import Path

import pytest
from django.test import override_settings

from app import artifacts
from app.api import tokens
from app.models import Run, Status, StepRun
from app.pipelines.registry import registry
from app.runs import actions, engine, tasks, watchdog
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_run_files(remove_run_files):
    """Outputs of this test's runs go with it: a later test's run may get the same id."""


def output_of(step_run):
    return artifacts.load_output(step_run.output_path, step_run.output_inline)


def squares(define, name="t_map", fail=None):
    fail = fail if fail is not None else set()
    pipe = define(name)

    @pipe.step()
    def numbers(ctx):
        return list(range(1, ctx.params.n + 1)) if hasattr(ctx.params, "n") else [1, 2, 3, 4]

    @pipe.map(over=numbers, retries=1)
    def square(ctx, numbers):
        ctx.logger.info("item %s: %s", ctx.map_index, numbers)
        if numbers in fail:
            raise ValueError(f"no square for {numbers}")
        return numbers * numbers

    @pipe.step()
    def total(ctx, square, numbers):
        return {"squares": square, "sum": sum(square), "count": len(numbers)}

    return pipe


def test_each_item_is_a_step_run_and_the_results_arrive_in_order(define):
    squares(define)

    run = engine.run_inline(*engine.start_run("t_map"))

    assert run.status == Status.SUCCEEDED
    assert (run.steps_total, run.steps_finished) == (3, 3)
    node = StepRun.objects.get(run=run, step_name="square")
    assert (node.status, node.items_total, node.items_left, node.items_failed) == (Status.SUCCEEDED, 4, 0, 0)
    items = list(node.items.order_by("map_index"))
    assert [(i.step_name, i.status, i.attempt, output_of(i)) for i in items] == [
        ("square[0]", Status.SUCCEEDED, 1, 1), ("square[1]", Status.SUCCEEDED, 1, 4),
        ("square[2]", Status.SUCCEEDED, 1, 9), ("square[3]", Status.SUCCEEDED, 1, 16),
    ]
    assert "item 2: 3" in items[2].log
    assert output_of(StepRun.objects.get(run=run, step_name="total")) == {"squares": [1, 4, 9, 16], "sum": 30, "count": 4}


def test_a_dict_is_mapped_by_value_and_arrives_with_its_keys(define):
    pipe = define("t_map_dict")

    @pipe.step()
    def regions(ctx):
        return {"north": [1, 2], "south": [5], "east": []}

    @pipe.map(over=regions)
    def sales(ctx, regions):
        return sum(regions)

    @pipe.step()
    def report(ctx, sales):
        return sales

    run = engine.run_inline(*engine.start_run("t_map_dict"))

    assert run.status == Status.SUCCEEDED
    assert output_of(StepRun.objects.get(run=run, step_name="report")) == {"north": 3, "south": 5, "east": 0}


def test_an_empty_list_maps_to_an_empty_list(define):
    pipe = define("t_map_empty")

    @pipe.step()
    def nothing(ctx):
        return []

    @pipe.map(over=nothing)
    def each(ctx, nothing):
        raise AssertionError("never called")

    @pipe.step()
    def after(ctx, each):
        return ("got", each)

    run = engine.run_inline(*engine.start_run("t_map_empty"))

    assert run.status == Status.SUCCEEDED
    assert output_of(StepRun.objects.get(run=run, step_name="after")) == ("got", [])
    assert not StepRun.objects.filter(run=run, map_of__isnull=False).exists()


def test_a_failed_item_fails_the_map_after_its_retries_and_the_others_still_run(define):
    squares(define, fail={2, 4})

    run = engine.run_inline(*engine.start_run("t_map"))

    assert run.status == Status.FAILED
    node = StepRun.objects.get(run=run, step_name="square")
    assert (node.status, node.items_failed) == (Status.FAILED, 2)
    assert node.error == "2 of 4 items failed: square[1], square[3]"
    statuses = dict(node.items.values_list("step_name", "status"))
    assert statuses == {"square[0]": Status.SUCCEEDED, "square[1]": Status.FAILED, "square[2]": Status.SUCCEEDED,
                        "square[3]": Status.FAILED}
    failed = node.items.get(step_name="square[1]")
    assert (failed.attempt, failed.attempts.count(), failed.error) == (2, 1, "ValueError: no square for 2")
    assert StepRun.objects.get(run=run, step_name="total").status == Status.UPSTREAM_FAILED
    assert (run.steps_finished, run.steps_total) == (3, 3)


def test_retry_from_failure_runs_only_the_failed_items_again(define):
    failing = {2, 4}
    squares(define, fail=failing)
    failed = engine.run_inline(*engine.start_run("t_map"))
    failing.clear()  # the fix

    retry, ready = actions.retry_from_failure(failed, None)

    node = StepRun.objects.get(run=retry, step_name="square")
    assert sorted(StepRun.objects.filter(pk__in=ready).values_list("step_name", flat=True)) == ["square[1]", "square[3]"]
    assert (node.status, node.items_left) == (Status.AWAITING, 2)
    retry = engine.run_inline(retry, ready)
    assert retry.status == Status.SUCCEEDED
    reused = dict(node.items.values_list("step_name", "reused_from__step_name"))
    assert reused == {"square[0]": "square[0]", "square[1]": None, "square[2]": "square[2]", "square[3]": None}
    assert output_of(StepRun.objects.get(run=retry, step_name="total"))["squares"] == [1, 4, 9, 16]


@pytest.mark.parametrize("value, message", [
    ("abc", "maps over the output of 'source', which is a builtins.str, not a list, a tuple or a dict"),
    (None, "maps over the output of 'source', which is a builtins.NoneType, not a list, a tuple or a dict"),
    (list(range(6)), "maps over the output of 'source', which has 6 items; a map takes at most 5 (MAP_MAX_ITEMS)"),
])
def test_an_output_that_cannot_be_mapped_over_fails_the_step_saying_why(define, settings, value, message):
    settings.MAP_MAX_ITEMS = 5
    pipe = define("t_map_bad")

    @pipe.step()
    def source(ctx):
        return value

    @pipe.map(over=source)
    def each(ctx, source):
        return source

    run = engine.run_inline(*engine.start_run("t_map_bad"))

    node = StepRun.objects.get(run=run, step_name="each")
    assert (run.status, node.status, node.error) == (Status.FAILED, Status.FAILED, message)
    assert not node.items.exists()


def test_a_map_can_take_other_inputs_and_be_mapped_over_again(define):
    pipe = define("t_map_chain")

    @pipe.step()
    def words(ctx):
        return ["a", "bb", "ccc"]

    @pipe.step()
    def suffix(ctx):
        return "!"

    @pipe.map(over=words)
    def shout(ctx, words, suffix):
        return words.upper() + suffix

    @pipe.map(over=shout)
    def length(ctx, shout):
        return len(shout)

    @pipe.step()
    def summary(ctx, length, shout):
        return list(zip(shout, length))

    run = engine.run_inline(*engine.start_run("t_map_chain"))

    assert run.status == Status.SUCCEEDED
    assert output_of(StepRun.objects.get(run=run, step_name="summary")) == [("A!", 2), ("BB!", 3), ("CCC!", 4)]


def test_cancelling_a_run_stops_the_items_not_started(define):
    squares(define)
    run, ready = engine.start_run("t_map")
    ready = engine.execute_step(ready[0])  # numbers
    ready = engine.execute_step(ready[0])  # square: expands into 4 items
    assert len(ready) == 4
    engine.execute_step(ready[0])  # one item done

    actions.cancel(Run.objects.get(pk=run.pk), None)

    run.refresh_from_db()
    node = StepRun.objects.get(run=run, step_name="square")
    assert (run.status, node.status) == (Status.CANCELLED, Status.CANCELLED)
    assert sorted(node.items.values_list("status", flat=True)) == [Status.CANCELLED] * 3 + [Status.SUCCEEDED]
    assert StepRun.objects.get(run=run, step_name="total").status == Status.CANCELLED
    assert (run.steps_finished, run.steps_total) == (3, 3)


# --- on a real worker --------------------------------------------------------------------------

API = "tests.fixtures.api_pipelines"


@pytest.fixture
def api_pipelines(settings):
    registry.discover(API)
    try:
        yield
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)


def finished(run_id):
    run = Run.objects.get(pk=run_id)
    return run if run.is_finished else None


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_retries_3_failed_items_of_100_and_only_those(api_pipelines, start_worker):
    start_worker(PIPELINES_PACKAGE=API)
    run = engine.start_run("t_mapped", {"n": 100, "fail": "7,42,99"})[0]
    tasks.enqueue(list(run.step_runs.filter(status=Status.QUEUED).values_list("pk", flat=True)))
    run = wait_for(lambda: finished(run.pk), timeout=90, message="the map to finish")

    node = StepRun.objects.get(run=run, step_name="double")
    assert (run.status, node.status, node.items_total, node.items_failed) == (Status.FAILED, Status.FAILED, 100, 3)
    assert node.error == "3 of 100 items failed: double[7], double[42], double[99]"
    assert node.items.filter(status=Status.SUCCEEDED).count() == 97

    for value in (7, 42, 99):
        (Path(os.environ["DATA_DIR"]) / f"fail-{value}").unlink()
    retry, ready = actions.retry_from_failure(run, None)
    assert len(ready) == 3
    tasks.enqueue(ready)
    retry = wait_for(lambda: finished(retry.pk), timeout=60, message="the retry to finish")

    assert retry.status == Status.SUCCEEDED
    assert output_of(StepRun.objects.get(run=retry, step_name="total")) == sum(range(100)) * 2
    node = StepRun.objects.get(run=retry, step_name="double")
    ran_again = set(node.items.filter(reused_from__isnull=True).values_list("step_name", flat=True))
    assert ran_again == {"double[7]", "double[42]", "double[99]"}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_items_run_in_step_processes(api_pipelines, start_worker):
    worker = start_worker(PIPELINES_PACKAGE=API)
    run = engine.start_run("t_mapped_process", {"n": 20})[0]
    tasks.enqueue(list(run.step_runs.filter(status=Status.QUEUED).values_list("pk", flat=True)))
    run = wait_for(lambda: finished(run.pk), timeout=90, message="the map to finish")

    assert run.status == Status.SUCCEEDED
    results = output_of(StepRun.objects.get(run=run, step_name="collect"))
    assert [value for _pid, value in results] == list(range(20))
    assert worker.pid not in {pid for pid, _value in results}  # each item ran in a step process


# --- on the pages -----------------------------------------------------------------------------


def test_the_run_page_shows_a_mapped_step_as_one_row_with_its_items_count(define, operator_client):
    squares(define, fail={3})
    run = engine.run_inline(*engine.start_run("t_map"))

    page = operator_client.get(f"/runs/{run.pk}/").content.decode()

    assert page.count('id="step-row-') == 3  # items, square, total: no row per item
    assert "3/4 done, 1 failed" in page
    assert "✗ 3/4 · 1 failed" in page  # the DAG's status line
    assert "1 of 4 items failed: square[2]" in page


def test_a_mapped_steps_page_lists_its_items_by_status(define, operator_client):
    squares(define, fail={3})
    run = engine.run_inline(*engine.start_run("t_map"))

    everything = operator_client.get(f"/runs/{run.pk}/steps/square/").content.decode()
    failed = operator_client.get(f"/runs/{run.pk}/steps/square/?items=failed").content.decode()

    assert [f"square[{i}]" in everything for i in range(4)] == [True] * 4
    assert "failed (1)" in everything and "succeeded (3)" in everything
    assert "square[2]" in failed and "square[0]" not in failed and "ValueError: no square for 3" in failed


def test_an_items_page_names_its_item_and_links_back(define, operator_client):
    squares(define)
    run = engine.run_inline(*engine.start_run("t_map"))

    page = operator_client.get(f"/runs/{run.pk}/steps/square%5B1%5D/").content.decode()

    assert "Item 1 of <code>square</code>" in page
    assert f'href="/runs/{run.pk}/steps/square/"' in page
    assert "item 1 of the output of" in page


def test_the_runs_api_gives_a_mapped_steps_items_count(define, client, operator):
    squares(define, fail={1})
    run = engine.run_inline(*engine.start_run("t_map"))
    secret = tokens.create(operator, "dashboard", scopes=["runs:read"])[1]

    answer = client.get(f"/api/runs/{run.pk}", HTTP_AUTHORIZATION=f"Bearer {secret}")
    steps = {s["name"]: s for s in answer.json()["steps"]}

    assert list(steps) == ["numbers", "square", "total"]
    assert steps["square"]["items"] == {"total": 4, "done": 3, "failed": 1}
    assert steps["numbers"]["items"] is None


def test_a_map_of_10000_items_expands_and_its_page_shows_them_a_page_at_a_time(define, operator_client):
    pipe = define("t_map_10k")

    @pipe.step()
    def many(ctx):
        return list(range(10_000))

    @pipe.map(over=many)
    def each(ctx, many):
        return many

    run, ready = engine.start_run("t_map_10k")
    ready = engine.execute_step(ready[0])
    items = engine.execute_step(ready[0])

    node = StepRun.objects.get(run=run, step_name="each")
    assert (len(items), node.status, node.items_total, node.items_left) == (10_000, Status.AWAITING, 10_000, 10_000)
    page = operator_client.get(f"/runs/{run.pk}/steps/each/?page=3").content.decode()
    assert "page 3 of 100" in page and "each[200]" in page and "each[300]" not in page
    run_page = operator_client.get(f"/runs/{run.pk}/").content.decode()
    assert run_page.count('id="step-row-') == 2 and "0/10000 done" in run_page


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@override_settings(STEP_LOST_AFTER_SECONDS=1.5)
def test_items_of_a_killed_worker_are_run_again_and_the_map_finishes(api_pipelines, start_worker):
    fast = {"STEP_HEARTBEAT_SECONDS": "0.2", "STEP_LOST_AFTER_SECONDS": "1.5", "PIPELINES_PACKAGE": API}
    first = start_worker(**fast)
    run, ready = engine.start_run("t_mapped_slow", {"n": 8, "pause": 2})
    tasks.enqueue(ready)
    wait_for(lambda: StepRun.objects.filter(run=run, map_of__isnull=False, status=Status.RUNNING).count() >= 2,
             message="items to be running")

    first.send_signal(signal.SIGKILL)
    first.wait()
    lost = wait_for(watchdog.rescue_lost_steps, timeout=10, message="the watchdog to notice the dead worker")
    tasks.enqueue(lost)
    start_worker(**fast)

    run = wait_for(lambda: finished(run.pk), timeout=90, message="the map to finish on the second worker")
    assert run.status == Status.SUCCEEDED
    assert output_of(StepRun.objects.get(run=run, step_name="done")) == list(range(8))
    items = StepRun.objects.filter(run=run, map_of__isnull=False)
    assert items.filter(status=Status.SUCCEEDED).count() == 8
    rescued = [item for item in items if item.attempt == 2]
    assert rescued and all("stopped responding" in item.attempts.get().error for item in rescued)
