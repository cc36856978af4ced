"""The run state machine (app/engine.py), driven in-process step by step: the same calls
the worker makes (`start_run`, then `execute_step` on each id it returns)."""

import statistics

import pytest
from django.conf import settings

from app import artifacts, engine
from app.models import Metric, PipelineSnapshot, Run, Status, StepRun
from app.registry import ParamError, pipeline, registry

pytestmark = pytest.mark.django_db


def step_runs(run):
    return {sr.step_name: sr for sr in StepRun.objects.filter(run=run)}


def names(step_run_ids):
    return {sr.step_name for sr in StepRun.objects.filter(pk__in=step_run_ids)}


def id_of(run, step_name):
    return StepRun.objects.get(run=run, step_name=step_name).pk


def output_of(step_run):
    return artifacts.load_output(step_run.output_path)


@pytest.fixture
def define():
    """Define test pipelines in the global registry for one test, then rediscover the examples."""
    try:
        yield pipeline
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)


# --- starting a run ----------------------------------------------------------------------------


def test_it_creates_the_run_with_its_parameters_and_step_runs():
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})

    run.refresh_from_db()
    assert (run.pipeline_name, run.status, run.params) == ("fanout_demo", Status.QUEUED, {"rows": 10, "seed": 7})
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
        "colour": "unknown parameter (this pipeline takes: rows, seed)",
    }
    assert (Run.objects.count(), StepRun.objects.count(), PipelineSnapshot.objects.count()) == (0, 0, 0)


def test_it_rejects_an_unknown_pipeline_naming_it_and_the_known_ones():
    with pytest.raises(engine.UnknownPipeline) as caught:
        engine.start_run("fanout_dmeo")

    assert str(caught.value) == (
        "there is no pipeline named 'fanout_dmeo' (known pipelines: fanout_demo, flaky_demo, train_classifier)"
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
        assert step_run.worker and step_run.output_path == f"runs/{run.pk}/{step_run.step_name}.pkl"


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


def test_it_stores_what_a_step_prints():
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})

    engine.run_inline(run, ready)

    steps = step_runs(run)
    assert f"report: {output_of(steps['report'])}\n" in steps["report"].log
    assert steps["load"].log.count("generated 10 rows") == 1  # each step keeps only its own output


def test_it_gives_steps_their_parameters_typed(define):
    import datetime

    pipe = define("t_typed_params", params=TypedParams)

    @pipe.step()
    def echo(ctx):
        return ctx.params.as_dict()

    run, ready = engine.start_run("t_typed_params", {"day": "2024-05-06", "count": "3"})
    engine.run_inline(run, ready)

    assert output_of(step_runs(run)["echo"]) == {"day": datetime.date(2024, 5, 6), "count": 3, "flag": True}
