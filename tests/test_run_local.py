"""The test harness for pipeline authors (app/pipelines/local.py): `pipe.run_local()` runs a
pipeline in the test's process. No test here has database access: pytest-django refuses
any query, so each one also shows the harness needs no database."""

import logging
import pickle
import threading

import numpy as np
import pandas as pd
import pytest

from app.pipelines import DefinitionError, ParamError, Params, Pipeline, StepFailed, param
from app.pipelines.registry import registry


class Sizes(Params):
    n: int = param(3, ge=1, le=10)


def numbers_pipeline():
    pipe = Pipeline(name="numbers", params_class=Sizes)

    @pipe.step()
    def load(ctx):
        ctx.logger.info("making %d numbers", ctx.params.n)
        return list(range(ctx.params.n))

    def power(exponent):
        def step(ctx, load):
            return [x ** exponent for x in load]
        return step

    for exponent in (1, 2):
        pipe.step(name=f"power_{exponent}", group="powers")(power(exponent))

    @pipe.step()
    def report(ctx, powers, load):
        ctx.log_metric("total", sum(map(sum, powers.values())))
        ctx.log_table("powers", [{"step": name, "sum": sum(values)} for name, values in powers.items()])
        return {name: sum(values) for name, values in powers.items()}

    return pipe


def test_it_runs_every_step_and_keeps_outputs_logs_metrics_and_tables():
    result = numbers_pipeline().run_local({"n": "4"})  # raw values, as from a form

    assert result.params.n == 4
    assert result.outputs["load"] == [0, 1, 2, 3]
    assert result.outputs["report"] == {"power_1": 6, "power_2": 14}
    assert result.metrics == {"total": 20.0}
    assert result.tables["report"]["powers"] == {"columns": ["step", "sum"], "rows": [["power_1", 6], ["power_2", 14]]}
    assert result.log("load") == "INFO making 4 numbers"
    assert result.attempts == {"load": 1, "power_1": 1, "power_2": 1, "report": 1}


def test_given_outputs_stand_in_for_steps_so_one_step_is_tested_alone():
    calls = []
    pipe = numbers_pipeline()
    original = pipe.steps["load"].func
    pipe.steps["load"].func = lambda ctx: calls.append("load") or original(ctx)

    result = pipe.run_local(given={"load": [5], "power_2": [100]})

    assert calls == []  # load was not run
    assert result.outputs["report"] == {"power_1": 5, "power_2": 100}
    assert "load" not in result.outputs


def test_it_refuses_bad_parameters_naming_them():
    with pytest.raises(ParamError, match="n") as caught:
        numbers_pipeline().run_local({"n": "eleven", "size": 3})

    assert set(caught.value.errors) == {"n", "size"}


def test_it_refuses_a_definition_with_problems():
    pipe = Pipeline(name="broken")

    @pipe.step()
    def fit(ctx, missing):
        return 1

    with pytest.raises(DefinitionError, match="pipeline 'broken' cannot run: step 'fit' .*parameter 'missing' names no step"):
        pipe.run_local()


def test_it_refuses_given_outputs_for_steps_that_do_not_exist():
    with pytest.raises(ValueError, match="given= names no step of 'numbers': lod"):
        numbers_pipeline().run_local(given={"lod": []})


def test_a_failing_step_is_retried_then_named_with_what_ran_before_it():
    pipe = Pipeline(name="flaky")
    tries = []

    @pipe.step()
    def load(ctx):
        return 1

    @pipe.step(retries=2, retry_delay=3600)  # the delay is not waited for
    def fit(ctx, load):
        tries.append(ctx.attempt)
        raise RuntimeError("out of luck")

    with pytest.raises(StepFailed, match=r"step 'fit' failed \(attempt 3\): RuntimeError: out of luck") as caught:
        pipe.run_local()

    assert tries == [1, 2, 3]
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert caught.value.run.outputs == {"load": 1}
    assert caught.value.run.log("fit").splitlines()[0] == "attempt 1 failed: RuntimeError: out of luck"


def test_a_step_that_succeeds_on_a_retry_goes_on():
    pipe = Pipeline(name="flaky_once")

    @pipe.step(retries=1)
    def fetch(ctx):
        if ctx.attempt == 1:
            raise ConnectionError("timed out")
        return "data"

    result = pipe.run_local()

    assert result.outputs == {"fetch": "data"} and result.attempts == {"fetch": 2}


def test_an_output_a_worker_could_not_save_fails_the_step_with_the_workers_message():
    pipe = Pipeline(name="unpicklable")

    @pipe.step()
    def lock(ctx):
        return threading.Lock()

    with pytest.raises(StepFailed, match=r"step 'lock' .*returned a _thread.lock, which cannot be saved: step outputs "
                                         r"are pickled"):
        pipe.run_local()


def test_a_step_cannot_change_what_another_step_receives():
    pipe = Pipeline(name="mutating")

    @pipe.step()
    def load(ctx):
        return [1, 2, 3]

    @pipe.step()
    def greedy(ctx, load):
        load.clear()
        return len(load)

    @pipe.step(after=[greedy])
    def total(ctx, load):
        return sum(load)

    assert pipe.run_local().outputs["total"] == 6


def test_a_bad_metric_or_table_is_refused_as_a_worker_refuses_it():
    pipe = Pipeline(name="bad_records")

    @pipe.step()
    def score(ctx):
        ctx.log_metric("accuracy", float("nan"))

    with pytest.raises(StepFailed, match="metric 'accuracy': value nan is not finite"):
        pipe.run_local()


def test_registered_models_are_kept_with_their_version_and_files(tmp_path):
    pipe = Pipeline(name="models")

    @pipe.step()
    def train(ctx):
        first = ctx.register_model("tiny", {"weights": [1, 2]}, metrics={"accuracy": 0.5})
        second = ctx.register_model("tiny", {"weights": [3]}, metrics={"accuracy": 0.75})
        return [first, second]

    result = pipe.run_local(workdir=tmp_path)

    assert result.outputs["train"] == [1, 2]
    assert (result.models["tiny"].version, result.models["tiny"].obj, result.models["tiny"].metrics) == (
        2, {"weights": [3]}, {"accuracy": 0.75},
    )
    assert [v.version for v in result.versions] == [1, 2]
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["tiny-1.joblib", "tiny-2.joblib"]


def test_a_bad_reference_is_refused_as_a_worker_refuses_it():
    pipe = Pipeline(name="bad_reference")

    @pipe.step()
    def train(ctx):
        ctx.register_model("tiny", object(), reference=[["a", "b"]])

    with pytest.raises(StepFailed, match="step 'train'"):
        pipe.run_local()


def test_cancel_after_lets_a_step_see_its_run_cancelled():
    pipe = Pipeline(name="cancellable")

    @pipe.step()
    def first(ctx):
        return ctx.cancel_requested

    @pipe.step()
    def second(ctx, first):
        ctx.check_cancelled()
        return "not reached"

    with pytest.raises(Exception, match="cancelled"):
        pipe.run_local(cancel_after=1)


def test_the_shipped_classifier_trains_and_registers_in_process():
    result = registry.get("train_classifier").run_local({"n_estimators": "5", "dataset": "wine"})

    assert 0.7 < result.metrics["accuracy"] <= 1.0
    model = result.models["wine-rf"]
    assert model.version == 1 and model.obj.n_estimators == 5
    assert np.array_equal(model.obj.predict(result.outputs["split"]["X_test"]), result.outputs["evaluate"]["predicted"])
    assert set(result.tables["register"]) == {"Per-class scores on held-out rows", "Confusion matrix"}
    pickle.dumps(result.outputs)  # what a worker stores


def test_logs_are_kept_at_info_level_whatever_the_logging_setup():
    logging.getLogger("pipelines").setLevel(logging.ERROR)
    try:
        assert numbers_pipeline().run_local().log("load") == "INFO making 3 numbers"
    finally:
        logging.getLogger("pipelines").setLevel(logging.INFO)


def test_ctx_tag_keeps_checked_tags_on_the_result():
    pipe = Pipeline(name="tagging")

    @pipe.step()
    def first(ctx):
        ctx.tag("Env=Prod", "team:ml")
        return ctx.tag("team:ml")

    @pipe.step()
    def bad(ctx, first):
        ctx.tag("no spaces allowed")

    with pytest.raises(StepFailed, match="tag 'no spaces allowed' is not valid") as caught:
        pipe.run_local()

    assert caught.value.run.tags == ["env=prod", "team:ml"]
    assert caught.value.run.outputs["first"] == ["env=prod", "team:ml"]


def test_a_map_runs_once_per_item_in_the_harness():
    pipe = Pipeline(name="mapping_local")

    @pipe.step()
    def words(ctx):
        return {"a": "x", "b": "yy"}

    @pipe.map(over=words)
    def size(ctx, words):
        return (ctx.map_index, len(words))

    result = pipe.run_local()

    assert result.outputs["size"] == {"a": (0, 1), "b": (1, 2)}
    assert result.attempts["size"] == [1, 1]


def test_named_outputs_and_parameters_naming_one_work_as_on_a_worker():
    pipe = Pipeline(name="splitting")
    received = {}

    @pipe.step(outputs={"X_train": "npy", "X_test": "npy", "table": None})
    def split(ctx):
        table = pd.DataFrame({"when": pd.date_range("2026-01-01", periods=3)}, index=pd.Index([7, 8, 9], name="id"))
        return np.ones((4, 2)), np.zeros((1, 2)), table  # a tuple, in the declared order

    @pipe.step()
    def fit(ctx, X_train, table):
        received["fit"] = (X_train, table)
        return float(X_train.sum())

    @pipe.step()
    def report(ctx, split):
        return sorted(split)

    result = pipe.run_local()

    X_train, table = received["fit"]
    assert X_train.shape == (4, 2) and table.index.name == "id" and str(table["when"].dtype).startswith("datetime64")
    assert result.outputs["fit"] == 8.0 and result.outputs["report"] == ["X_test", "X_train", "table"]
    assert list(result.outputs["split"]) == ["X_train", "X_test", "table"]
    given = pipe.run_local(given={"split": {"X_train": np.ones((1, 2)), "X_test": np.ones((1, 2)), "table": table}})
    assert given.outputs["fit"] == 2.0


def test_outputs_that_are_not_the_declared_ones_fail_the_step_with_the_workers_message():
    pipe = Pipeline(name="mismatched")

    @pipe.step(outputs=["a", "b"])
    def split(ctx):
        return {"a": 1}

    @pipe.step(format="npy")
    def array(ctx):
        return [1, 2]

    with pytest.raises(StepFailed) as caught:
        pipe.run_local()

    assert str(caught.value.error) == (
        "step 'split' declares the outputs a, b, but returned a dict with the keys 'a' (missing: b)"
    )
    with pytest.raises(StepFailed, match="step 'array' declares format='npy', but returned a list; npy takes a numpy"):
        pipe.run_local(given={"split": (1, 2)})
