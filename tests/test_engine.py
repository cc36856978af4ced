"""The run state machine (app/engine.py), driven in-process step by step: the same calls
the worker makes (`start_run`, then `execute_step` on each id it returns)."""

import datetime
import io
import statistics
import sys
import threading

import pytest
from django.conf import settings

from app import artifacts
from app.models import Metric, PipelineSnapshot, Run, Status, StepRun
from app.pipelines.registry import ParamError, Params, param, registry
from app.runs import engine
from tests.conftest import run_on_worker

pytestmark = pytest.mark.django_db


def step_runs(run):
    return {sr.step_name: sr for sr in StepRun.objects.filter(run=run)}


def names(step_run_ids):
    return {sr.step_name for sr in StepRun.objects.filter(pk__in=step_run_ids)}


def id_of(run, step_name):
    return StepRun.objects.get(run=run, step_name=step_name).pk


def output_of(step_run):
    return artifacts.load_output(step_run.output_path, step_run.output_inline)


# --- starting a run ----------------------------------------------------------------------------


def test_it_creates_the_run_with_its_parameters_and_step_runs():
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})

    run.refresh_from_db()
    assert (run.pipeline_name, run.status, run.params) == ("fanout_demo", Status.QUEUED, {"rows": 10, "seed": 7, "pause": 0.0})
    assert (run.steps_total, run.steps_finished, run.started_at, run.finished_at) == (5, 0, None, None)
    assert [(sr.step_name, sr.status) for sr in StepRun.objects.filter(run=run)] == [
        ("load", Status.QUEUED),
        ("total", Status.PENDING),
        ("mean", Status.PENDING),
        ("spread", Status.PENDING),
        ("report", Status.PENDING),
    ]
    assert ready == [id_of(run, "load")]


def test_it_stores_the_snapshot_of_the_code_once():
    first, _ = engine.start_run("fanout_demo")
    second, _ = engine.start_run("fanout_demo", {"rows": "3"})

    assert first.snapshot_id == second.snapshot_id
    assert PipelineSnapshot.objects.get().source_hash == registry.get("fanout_demo").snapshot()["source_hash"]


def test_it_rejects_bad_parameters_without_creating_anything():
    with pytest.raises(ParamError) as caught:
        engine.start_run("fanout_demo", {"rows": "0", "colour": "red"})

    assert caught.value.errors == {
        "rows": "0 is below the minimum 1",
        "colour": "unknown parameter (this pipeline takes: pause, rows, seed)",
    }
    assert (Run.objects.count(), StepRun.objects.count(), PipelineSnapshot.objects.count()) == (0, 0, 0)


def test_it_rejects_an_unknown_pipeline_naming_it_and_the_known_ones():
    with pytest.raises(engine.UnknownPipeline) as caught:
        engine.start_run("fanout_dmeo")

    assert str(caught.value) == (
        "there is no pipeline named 'fanout_dmeo' (known pipelines: fanout_demo, flaky_demo, segment_report, train_classifier)"
    )
    assert Run.objects.count() == 0


# --- order ------------------------------------------------------------------------------------


def test_it_makes_the_three_fan_out_steps_ready_after_the_root():
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})

    now_ready = engine.execute_step(ready[0])

    assert names(now_ready) == {"total", "mean", "spread"}
    statuses = {name: sr.status for name, sr in step_runs(run).items()}
    assert statuses == {
        "load": Status.SUCCEEDED,
        "total": Status.QUEUED,
        "mean": Status.QUEUED,
        "spread": Status.QUEUED,
        "report": Status.PENDING,
    }
    run.refresh_from_db()
    assert (run.status, run.steps_finished) == (Status.RUNNING, 1)
    assert run.started_at is not None and run.finished_at is None


def test_it_makes_the_fan_in_step_ready_only_after_all_three_branches():
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})
    branches = engine.execute_step(ready[0])
    by_name = {sr.step_name: sr.pk for sr in StepRun.objects.filter(pk__in=branches)}

    after_total = engine.execute_step(by_name["total"])
    after_mean = engine.execute_step(by_name["mean"])
    report_status = StepRun.objects.get(run=run, step_name="report").status
    after_spread = engine.execute_step(by_name["spread"])

    assert (after_total, after_mean, report_status) == ([], [], Status.PENDING)
    assert after_spread == [id_of(run, "report")]
    assert StepRun.objects.get(pk=after_spread[0]).status == Status.QUEUED


def test_it_does_not_run_a_step_whose_upstream_has_not_finished():
    run, _ready = engine.start_run("fanout_demo", {"rows": "10"})
    report = id_of(run, "report")

    assert engine.execute_step(report) == []

    step_run = StepRun.objects.get(pk=report)
    assert (step_run.status, step_run.attempt, step_run.started_at) == (Status.PENDING, 0, None)


def test_it_starts_no_step_before_its_upstreams_finished():
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})

    engine.run_inline(run, ready)

    steps = step_runs(run)
    for name in ("total", "mean", "spread"):
        assert steps[name].started_at >= steps["load"].finished_at
        assert steps["report"].started_at >= steps[name].finished_at


# --- results -----------------------------------------------------------------------------------


def test_it_gives_the_fan_in_step_all_three_outputs():
    run, ready = engine.start_run("fanout_demo", {"rows": "10", "seed": "3"})

    engine.run_inline(run, ready)

    steps = step_runs(run)
    rows = output_of(steps["load"])
    assert len(rows) == 10
    assert output_of(steps["total"]) == sum(rows)
    assert output_of(steps["report"]) == {
        "total": sum(rows),
        "mean": round(statistics.fmean(rows), 3),
        "stdev": round(statistics.pstdev(rows), 3),
    }


def test_it_finishes_the_run_when_every_step_succeeded():
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})

    run = engine.run_inline(run, ready)

    assert (run.status, run.steps_finished, run.steps_total) == (Status.SUCCEEDED, 5, 5)
    assert run.created_at <= run.started_at <= run.finished_at
    for step_run in step_runs(run).values():
        assert (step_run.status, step_run.attempt, step_run.error) == (Status.SUCCEEDED, 1, "")
        assert step_run.queued_at <= step_run.started_at <= step_run.finished_at
        assert step_run.worker and (step_run.output_path or step_run.output_inline)


def test_it_records_the_metrics_a_step_logs():
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})

    engine.run_inline(run, ready)

    steps = step_runs(run)
    metrics = {(m.step_run.step_name, m.name): m.value for m in Metric.objects.filter(run=run)}
    assert metrics == {
        ("mean", "mean"): output_of(steps["mean"]),
        ("spread", "stdev"): output_of(steps["spread"]),
    }


def test_it_stores_what_a_step_logs():
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})

    engine.run_inline(run, ready)

    log = step_runs(run)["load"].log
    assert "INFO pipelines.fanout_demo.load: generated 10 rows" in log


def test_it_keeps_each_step_log_to_its_own_step():
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})

    engine.run_inline(run, ready)

    logs = {name: sr.log for name, sr in step_runs(run).items()}
    assert [name for name, log in logs.items() if "generated 10 rows" in log] == ["load"]


def test_it_stores_what_a_step_prints():
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})

    engine.run_inline(run, ready)

    report = step_runs(run)["report"]
    assert f"report: {output_of(report)}\n" in report.log


def test_it_stores_what_a_step_prints_after_stdout_was_replaced(monkeypatch):
    _warm_up, ready = engine.start_run("fanout_demo", {"rows": "1"})
    engine.execute_step(ready[0])  # the capture proxy is installed by now
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # as pytest does between two tests
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})

    engine.run_inline(run, ready)

    report = step_runs(run)["report"]
    assert f"report: {output_of(report)}\n" in report.log


class TypedParams(Params):
    day: datetime.date = param(help="A date")
    count: int = param(1, ge=0)
    flag: bool = param(True)


def test_it_gives_steps_their_parameters_typed(define):
    pipe = define("t_typed_params", params=TypedParams)

    @pipe.step()
    def echo(ctx):
        return ctx.params.as_dict()

    run, ready = engine.start_run("t_typed_params", {"day": "2024-05-06", "count": "3"})
    engine.run_inline(run, ready)

    assert output_of(step_runs(run)["echo"]) == {"day": datetime.date(2024, 5, 6), "count": 3, "flag": True}


def test_a_small_output_is_kept_in_the_database_and_a_large_one_in_a_file(define, settings):
    import numpy as np

    settings.STEP_OUTPUT_INLINE_BYTES = 1024
    pipe = define("t_outputs")

    @pipe.step()
    def small(ctx):
        return {"accuracy": 0.93, "classes": ["a", "b"]}

    @pipe.step()
    def large(ctx):
        return list(range(2000))  # ~6 KB pickled

    @pipe.step()
    def array(ctx):
        return np.arange(127, dtype=np.int64)  # just over 1 KB: crosses the limit while pickling

    @pipe.step(after=[small, large, array])
    def combine(ctx, small, large, array):
        return [small["accuracy"], sum(large), int(array.sum())]

    run = engine.run_inline(*engine.start_run("t_outputs"))

    steps = step_runs(run)
    assert run.status == Status.SUCCEEDED
    assert output_of(steps["combine"]) == [0.93, sum(range(2000)), sum(range(127))]
    store = settings.ARTIFACTS_DIR / "runs" / str(run.pk)
    for name in ("small", "combine"):  # kept in the row: no file
        assert steps[name].output_path == "" and 0 < len(steps[name].output_inline) <= 1024
        assert not (store / f"{name}.pkl").exists()
    for name in ("large", "array"):  # over the limit: a file, nothing in the row
        assert (steps[name].output_path, steps[name].output_inline) == (f"runs/{run.pk}/{name}.pkl", None)
        assert (store / f"{name}.pkl").stat().st_size > 1024
    assert output_of(steps["array"]).tolist() == list(range(127))
    assert sorted(p.name for p in store.iterdir()) == ["array.pkl", "large.pkl"]  # no temporary file left


def test_with_no_inline_outputs_every_output_is_a_file(define, settings):
    settings.STEP_OUTPUT_INLINE_BYTES = 0
    pipe = define("t_outputs_files")
    pipe.step(name="tiny")(lambda ctx: 1)

    run = engine.run_inline(*engine.start_run("t_outputs_files"))

    tiny = step_runs(run)["tiny"]
    assert (tiny.output_path, tiny.output_inline) == (f"runs/{run.pk}/tiny.pkl", None)
    assert output_of(tiny) == 1


# --- failures ---------------------------------------------------------------------------------


def test_it_fails_the_step_and_skips_only_what_depends_on_it():
    run, ready = engine.start_run("flaky_demo")

    run = engine.run_inline(run, ready)

    steps = step_runs(run)
    assert {name: sr.status for name, sr in steps.items()} == {
        "extract": Status.SUCCEEDED,
        "validate": Status.FAILED,
        "publish": Status.UPSTREAM_FAILED,
        "archive": Status.SUCCEEDED,
    }
    assert (run.status, run.steps_finished, run.steps_total) == (Status.FAILED, 4, 4)
    assert run.finished_at is not None


def test_it_stores_the_error_traceback_and_log_of_a_failed_step():
    run, ready = engine.start_run("flaky_demo")

    engine.run_inline(run, ready)

    validate = step_runs(run)["validate"]
    assert validate.error == "ValueError: 1 record(s) have a negative amount: ids [5]"
    assert validate.traceback.startswith("Traceback (most recent call last):")
    assert 'raise ValueError(f"{len(bad)} record(s) have a negative amount: ids {bad}")' in validate.traceback
    assert validate.traceback.rstrip().endswith("ValueError: 1 record(s) have a negative amount: ids [5]")
    assert "ERROR pipelines.flaky_demo.validate: records with negative amounts: [5]" in validate.log
    assert (validate.attempt, validate.output_path, validate.output_inline) == (1, "", None)


def test_it_never_starts_a_step_below_a_failure():
    run, ready = engine.start_run("flaky_demo")

    engine.run_inline(run, ready)

    publish = step_runs(run)["publish"]
    assert (publish.attempt, publish.started_at, publish.worker) == (0, None, "")
    assert publish.finished_at is not None
    assert not Metric.objects.filter(run=run).exists()


def test_it_succeeds_when_the_parameter_turns_the_failure_off():
    run, ready = engine.start_run("flaky_demo", {"fail": "false"})

    run = engine.run_inline(run, ready)

    assert run.status == Status.SUCCEEDED
    assert output_of(step_runs(run)["publish"]) == 5
    assert Metric.objects.get(run=run).value == 5


def test_it_fails_a_step_whose_output_cannot_be_saved(define):
    pipe = define("t_unpicklable")

    @pipe.step()
    def make(ctx):
        return threading.Lock()

    run, ready = engine.start_run("t_unpicklable")
    run = engine.run_inline(run, ready)

    step_run = step_runs(run)["make"]
    assert (run.status, step_run.status) == (Status.FAILED, Status.FAILED)
    assert step_run.error == (
        "TypeError: step 'make' returned a _thread.lock, which cannot be saved: step outputs are pickled "
        "(TypeError: cannot pickle '_thread.lock' object)"
    )
    assert (step_run.output_path, step_run.output_inline) == ("", None)


def test_it_fails_a_step_that_logs_a_metric_that_is_not_a_number(define):
    pipe = define("t_bad_metric")

    @pipe.step()
    def measure(ctx):
        ctx.log_metric("loss", float("nan"))

    run, ready = engine.start_run("t_bad_metric")
    engine.run_inline(run, ready)

    step_run = step_runs(run)["measure"]
    assert (step_run.status, step_run.error) == (Status.FAILED, "ValueError: metric 'loss': value nan is not finite")
    assert not Metric.objects.exists()


# --- claims -----------------------------------------------------------------------------------


def test_it_does_not_run_a_finished_step_again():
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})
    run = engine.run_inline(run, ready)
    before = StepRun.objects.get(pk=ready[0])

    assert engine.execute_step(ready[0]) == []

    after = StepRun.objects.get(pk=ready[0])
    assert (after.status, after.attempt, after.finished_at) == (Status.SUCCEEDED, 1, before.finished_at)
    run.refresh_from_db()
    assert (run.status, run.steps_finished) == (Status.SUCCEEDED, 5)


def test_it_does_not_run_a_step_another_worker_claimed():
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})
    StepRun.objects.filter(pk=ready[0]).update(status=Status.RUNNING, attempt=1, worker="elsewhere:1:t")

    assert engine.execute_step(ready[0]) == []

    step_run = StepRun.objects.get(pk=ready[0])
    assert (step_run.status, step_run.attempt, step_run.worker, step_run.output_path) == (
        Status.RUNNING,
        1,
        "elsewhere:1:t",
        "",
    )
    assert StepRun.objects.filter(run=run, status=Status.QUEUED).count() == 0


def test_it_runs_a_step_only_once_when_its_task_is_delivered_twice():
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})

    first = engine.execute_step(ready[0])
    second = engine.execute_step(ready[0])

    assert (len(first), second) == (3, [])
    assert StepRun.objects.get(pk=ready[0]).attempt == 1
    run.refresh_from_db()
    assert run.steps_finished == 1


# --- retries ----------------------------------------------------------------------------------


@pytest.fixture
def retried_once(define):
    """A pipeline whose step fails on its first attempt and succeeds on its second."""
    pipe = define("t_retried_once")

    @pipe.step(retries=1)
    def wobbly(ctx):
        ctx.logger.info("attempt %d starting", ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("the first attempt fails")
        return "done"

    @pipe.step(after=[wobbly])
    def after(ctx, wobbly):
        return wobbly.upper()

    return pipe


def test_it_queues_a_failed_step_again_while_it_has_retries_left(retried_once):
    run, ready = engine.start_run("t_retried_once")

    again = engine.execute_step(ready[0])

    assert again == ready
    step_run = StepRun.objects.get(pk=ready[0])
    assert (step_run.status, step_run.attempt) == (Status.QUEUED, 1)
    assert step_run.error == "RuntimeError: the first attempt fails"
    first = step_run.attempts.get()
    assert (first.number, first.status) == (1, Status.FAILED)
    assert "RuntimeError: the first attempt fails" in first.traceback
    assert "attempt 1 starting" in first.log
    run.refresh_from_db()
    assert (run.status, run.steps_finished) == (Status.RUNNING, 0)


def test_it_succeeds_on_the_second_attempt(retried_once):
    run, ready = engine.start_run("t_retried_once")
    engine.execute_step(ready[0])

    now_ready = engine.execute_step(ready[0])

    assert names(now_ready) == {"after"}
    step_run = StepRun.objects.get(pk=ready[0])
    assert (step_run.status, step_run.attempt) == (Status.SUCCEEDED, 2)
    assert output_of(step_run) == "done"


def test_it_finishes_a_run_whose_step_needed_a_retry(retried_once):
    run, ready = engine.start_run("t_retried_once")

    run = engine.run_inline(run, ready)

    assert (run.status, run.steps_finished) == (Status.SUCCEEDED, 2)
    assert output_of(step_runs(run)["after"]) == "DONE"


def test_it_keeps_the_log_of_a_failed_attempt_when_the_retry_succeeds(retried_once):
    run, ready = engine.start_run("t_retried_once")

    engine.run_inline(run, ready)

    wobbly = step_runs(run)["wobbly"]
    assert "attempt 2 starting" in wobbly.log and "attempt 1 starting" not in wobbly.log
    assert [(a.number, "attempt 1 starting" in a.log) for a in wobbly.attempts.all()] == [(1, True)]


def test_it_waits_before_a_retry_with_a_delay(define):
    pipe = define("t_delayed_retry")

    @pipe.step(retries=2, retry_delay=0.2, backoff=2)
    def shaky(ctx):
        if ctx.attempt < 3:
            raise RuntimeError(f"attempt {ctx.attempt} fails")
        return ctx.attempt

    run, ready = engine.start_run("t_delayed_retry")
    first = engine.execute_step(ready[0])
    assert (list(first), first.later) == ([], [(ready[0], 0.2)])
    assert StepRun.objects.get(pk=ready[0]).status == Status.RETRYING

    run = engine.run_inline(run, [ready[0]])

    shaky_run = step_runs(run)["shaky"]
    assert (run.status, shaky_run.attempt, output_of(shaky_run)) == (Status.SUCCEEDED, 3, 3)
    attempts = list(shaky_run.attempts.all())
    assert [a.error for a in attempts] == ["RuntimeError: attempt 1 fails", "RuntimeError: attempt 2 fails"]
    # the second retry waited retry_delay * backoff = 0.4 s after the second failure
    assert (shaky_run.started_at - attempts[1].finished_at).total_seconds() >= 0.4


def test_it_clears_the_error_of_a_failed_attempt_when_the_retry_succeeds(retried_once):
    run, ready = engine.start_run("t_retried_once")

    engine.run_inline(run, ready)

    wobbly = step_runs(run)["wobbly"]
    assert (wobbly.status, wobbly.error) == (Status.SUCCEEDED, "")


def test_it_fails_a_step_when_its_retries_are_used_up(define):
    pipe = define("t_always_fails")

    @pipe.step(retries=1)
    def hopeless(ctx):
        ctx.logger.info("attempt %d", ctx.attempt)
        raise RuntimeError(f"attempt {ctx.attempt} failed")

    run, ready = engine.start_run("t_always_fails")
    run = engine.run_inline(run, ready)

    step_run = step_runs(run)["hopeless"]
    assert (run.status, step_run.status, step_run.attempt) == (Status.FAILED, Status.FAILED, 2)
    assert step_run.error == "RuntimeError: attempt 2 failed"
    assert step_run.log.endswith("hopeless: attempt 2\n")
    assert "RuntimeError: attempt 2 failed" in step_run.traceback
    first = step_run.attempts.get()
    assert first.log.endswith("hopeless: attempt 1\n")
    assert "RuntimeError: attempt 1 failed" in first.traceback


def test_a_run_whose_pipeline_code_changed_fails_inline_saying_so(define):
    first = define("t_changing")

    @first.step()
    def only(ctx):
        return 1

    run, ready = engine.start_run("t_changing")
    registry.discover(settings.PIPELINES_PACKAGE)  # the module is edited and loaded again…
    second = define("t_changing")

    @second.step()
    def only(ctx):  # noqa: F811 — …with other code
        return 2

    run = engine.run_inline(run, ready)

    step_run = run.step_runs.get()
    assert (run.status, step_run.status) == (Status.FAILED, Status.FAILED)
    assert "pipeline 't_changing'" in step_run.error and "recording the outcome failed" not in step_run.error
    # The loaded code never started a run, so nothing says it is newer: the process is told to restart.
    assert "runs older code of pipeline 't_changing' than this run" in step_run.error
    assert step_run.error.endswith("and no worker with the run's code took the step: restart the worker")


@pytest.mark.django_db
def test_a_run_left_unclosed_is_closed_and_announced_once_whoever_gets_there_first():
    """A worker and the watchdog may both find a run with every step finished and not closed
    (a chain's success recorded on its own, PostgreSQL): one closes it, the other finds it
    closed; `run_finished` (a retrain's deploy decision hangs on it) is sent once."""
    from django.utils import timezone

    from app.runs import statements
    from app.runs.signals import run_finished

    run = engine.run_inline(*engine.start_run("fanout_demo", {"rows": "5"}))
    Run.objects.filter(pk=run.pk).update(status=Status.RUNNING, finished_at=None)
    announced = []

    def listen(sender, run_id, status, **kwargs):
        announced.append((run_id, status))

    run_finished.connect(listen)
    try:
        assert statements.close_if_finished(run.pk, timezone.now()) is True
        assert statements.close_if_finished(run.pk, timezone.now()) is False
        assert statements.close_finished_runs(timezone.now()) == []
    finally:
        run_finished.disconnect(listen)
    assert announced == [(run.pk, Status.SUCCEEDED)]
    assert Run.objects.get(pk=run.pk).status == Status.SUCCEEDED


# --- inferred edges and groups (the pipeline API) -------------------------------------------


def test_a_step_runs_after_the_steps_its_parameters_name(define):
    pipe = define("t_inferred")

    @pipe.step()
    def load(ctx):
        return [3, 4]

    @pipe.step()
    def square(ctx, load):
        return [x * x for x in load]

    @pipe.step()
    def total(ctx, square, load):
        return sum(square) + len(load)

    run, ready = engine.start_run("t_inferred")
    assert names(ready) == {"load"}
    assert {sr.step_name: sr.upstream_left for sr in StepRun.objects.filter(run=run)} == {
        "load": 0, "square": 1, "total": 2,
    }
    run = engine.run_inline(run, ready)

    assert run.status == Status.SUCCEEDED
    assert output_of(step_runs(run)["total"]) == 27


def test_a_group_arrives_as_a_dict_of_its_steps_outputs_in_their_order(define):
    pipe = define("t_group")

    @pipe.step()
    def load(ctx):
        return 10

    def times(factor):  # steps made in a loop: one function each, by a factory
        def step(ctx, load):
            return load * factor
        return step

    for factor in (3, 1, 2):
        pipe.step(name=f"times_{factor}", group="products")(times(factor))

    @pipe.step()
    def report(ctx, products):
        return list(products.items())

    run = engine.run_inline(*engine.start_run("t_group"))

    assert run.status == Status.SUCCEEDED
    assert output_of(step_runs(run)["report"]) == [("times_3", 30), ("times_1", 10), ("times_2", 20)]


def test_a_failed_member_of_a_group_stops_the_step_that_takes_the_group(define):
    pipe = define("t_group_fails")

    @pipe.step(group="parts")
    def good(ctx):
        return 1

    @pipe.step(group="parts")
    def bad(ctx):
        raise ValueError("no data for this part")

    @pipe.step()
    def merge(ctx, parts):
        return parts

    run = engine.run_inline(*engine.start_run("t_group_fails"))

    steps = step_runs(run)
    assert run.status == Status.FAILED
    assert (steps["good"].status, steps["bad"].status, steps["merge"].status) == (
        Status.SUCCEEDED, Status.FAILED, Status.UPSTREAM_FAILED,
    )


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_gives_a_group_to_the_step_that_takes_it(start_worker):
    run = run_on_worker(start_worker, "tests.fixtures.api_pipelines", "t_grouped")

    assert run.status == Status.SUCCEEDED
    assert output_of(step_runs(run)["collect"]) == [("times_3", 30), ("times_1", 10), ("times_2", 20)]
