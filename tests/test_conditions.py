"""Conditions: `when=`, `return skip(...)` and what happens below a skipped step
(`when_upstream`), through the engine, the harness and a real worker."""

import pytest

from app import artifacts
from app.models import Status, StepRun
from app.pipelines import Params, Pipeline, param, skip
from app.runs import actions, engine
from tests.conftest import run_on_worker

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_run_files(remove_run_files):
    """Outputs of this test's runs go with it: a later test's run may get the same id."""


class Threshold(Params):
    minimum: int = param(0)
    empty: bool = param(False)


def statuses(run):
    return dict(StepRun.objects.filter(run=run, map_of__isnull=True).values_list("step_name", "status"))


def errors(run):
    return dict(StepRun.objects.filter(run=run).exclude(error="").values_list("step_name", "error"))


def output_of(run, name):
    step_run = StepRun.objects.get(run=run, step_name=name)
    return artifacts.load_output(step_run.output_path, step_run.output_inline)


def branching(pipe):
    @pipe.step()
    def rows(ctx):
        return [] if ctx.params.empty else [3, 5, 8]

    @pipe.step(when=lambda ctx, rows: sum(rows) >= ctx.params.minimum)
    def train(ctx, rows):
        return sum(rows)

    @pipe.step()
    def publish(ctx, train):  # skipped with train
        return f"published {train}"

    @pipe.step()
    def check(ctx, rows):
        return skip("no rows to check") if not rows else len(rows)

    @pipe.step(when_upstream="any")
    def report(ctx, train, check):
        return {"train": train, "check": check}

    return pipe


def test_a_false_condition_skips_the_step_and_what_needs_it_and_the_run_succeeds(define):
    branching(define("t_when", params=Threshold))

    run = engine.run_inline(*engine.start_run("t_when", {"minimum": 100}))

    assert run.status == Status.SUCCEEDED
    assert statuses(run) == {"rows": Status.SUCCEEDED, "train": Status.SKIPPED, "publish": Status.SKIPPED,
                             "check": Status.SUCCEEDED, "report": Status.SUCCEEDED}
    assert errors(run) == {"train": "skipped: its condition (lambda) is false",
                           "publish": "skipped: upstream step 'train' was skipped"}
    assert output_of(run, "report") == {"train": None, "check": 3}  # a skipped input arrives as None
    assert (run.steps_finished, run.steps_total) == (5, 5)


def test_a_true_condition_runs_the_step(define):
    branching(define("t_when", params=Threshold))

    run = engine.run_inline(*engine.start_run("t_when", {"minimum": 10}))

    assert set(statuses(run).values()) == {Status.SUCCEEDED}
    assert output_of(run, "publish") == "published 16"


def test_returning_skip_skips_with_its_reason_and_any_upstream_runs_while_one_succeeded(define):
    branching(define("t_when", params=Threshold))

    run = engine.run_inline(*engine.start_run("t_when", {"empty": True, "minimum": 0}))

    assert statuses(run)["check"] == Status.SKIPPED
    assert errors(run)["check"] == "skipped: it returned skip('no rows to check')"
    assert output_of(run, "report") == {"train": 0, "check": None}


def test_a_step_that_runs_on_any_upstream_is_skipped_when_all_of_them_were(define):
    branching(define("t_when", params=Threshold))

    run = engine.run_inline(*engine.start_run("t_when", {"empty": True, "minimum": 1}))

    assert statuses(run)["report"] == Status.SKIPPED
    assert errors(run)["report"] == "skipped: every upstream step was skipped"
    assert run.status == Status.SUCCEEDED


def test_a_skipped_group_member_is_left_out_of_the_group(define):
    pipe = define("t_when_group")

    def member(value):
        def step(ctx):
            return value if value else skip("nothing")
        return step

    for value in (1, 0, 3):
        pipe.step(name=f"part_{value}", group="parts")(member(value))

    @pipe.step(when_upstream="any")
    def merge(ctx, parts):
        return parts

    run = engine.run_inline(*engine.start_run("t_when_group"))

    assert output_of(run, "merge") == {"part_1": 1, "part_3": 3}


def test_a_skipped_item_gives_none_in_the_maps_results(define):
    pipe = define("t_when_map")

    @pipe.step()
    def numbers(ctx):
        return [1, -2, 3]

    @pipe.map(over=numbers)
    def root(ctx, numbers):
        return numbers ** 0.5 if numbers >= 0 else skip("negative")

    @pipe.step()
    def roots(ctx, root):
        return root

    run = engine.run_inline(*engine.start_run("t_when_map"))

    assert run.status == Status.SUCCEEDED
    assert output_of(run, "roots") == [1.0, None, 3 ** 0.5]
    assert StepRun.objects.get(run=run, step_name="root[1]").status == Status.SKIPPED


def test_a_map_over_a_skipped_step_is_skipped(define):
    pipe = define("t_when_map_skipped")

    @pipe.step(when=lambda ctx: False)
    def numbers(ctx):
        return [1]

    @pipe.map(over=numbers)
    def each(ctx, numbers):
        return numbers

    run = engine.run_inline(*engine.start_run("t_when_map_skipped"))

    assert statuses(run) == {"numbers": Status.SKIPPED, "each": Status.SKIPPED}
    assert run.status == Status.SUCCEEDED


def test_a_retry_keeps_skipped_steps_skipped(define):
    pipe = define("t_when_retry")
    broken = {"yes": True}

    @pipe.step(when=lambda ctx: False)
    def optional(ctx):
        return 1

    @pipe.step()
    def fragile(ctx):
        if broken["yes"]:
            raise RuntimeError("down")
        return 2

    @pipe.step(when_upstream="any")
    def last(ctx, optional, fragile):
        return [optional, fragile]

    failed = engine.run_inline(*engine.start_run("t_when_retry"))
    broken["yes"] = False
    retry = engine.run_inline(*actions.retry_from_failure(failed, None))

    assert retry.status == Status.SUCCEEDED
    assert statuses(retry)["optional"] == Status.SKIPPED
    assert output_of(retry, "last") == [None, 2]


@pytest.mark.parametrize("options, problem", [
    ({"when": "yes"}, "step 'fit' (tests/test_conditions.py:"),
    ({"when": lambda ctx, other: True}, "its when= function takes 'other', which the step does not take"),
    ({"when_upstream": "some"}, "step 'fit': when_upstream must be 'all' or 'any', not 'some'"),
])
def test_a_bad_condition_is_a_definition_problem(options, problem):
    pipe = Pipeline(name="p")

    @pipe.step()
    def load(ctx):
        return 1

    @pipe.step(**options)
    def fit(ctx, load):
        return 2

    [found] = pipe.validate()
    assert problem in found


def test_the_harness_skips_as_the_engine_does():
    result = branching(Pipeline(name="t_when_local", params_class=Threshold)).run_local({"minimum": 100})

    assert result.skipped == {"train": "its condition is false", "publish": "upstream step 'train' was skipped"}
    assert result.outputs["report"] == {"train": None, "check": 3}


API = "tests.fixtures.api_pipelines"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_skips_a_branch_in_step_processes(start_worker):
    run = run_on_worker(start_worker, API, "t_branching", {"minimum": 100})

    assert run.status == Status.SUCCEEDED
    assert statuses(run) == {"rows": Status.SUCCEEDED, "train": Status.SKIPPED, "publish": Status.SKIPPED,
                             "check": Status.SUCCEEDED, "report": Status.SUCCEEDED}
    assert output_of(run, "report") == {"train": None, "check": 3}


def test_a_retry_skips_a_step_below_a_skipped_step_it_reuses(define):
    pipe = define("t_when_retry_all")
    broken = {"yes": True}

    @pipe.step(when=lambda ctx: False)
    def optional(ctx):
        return 1

    @pipe.step()
    def fragile(ctx):
        if broken["yes"]:
            raise RuntimeError("down")
        return 2

    @pipe.step()
    def needs_both(ctx, optional, fragile):
        return "ran"

    failed = engine.run_inline(*engine.start_run("t_when_retry_all"))
    broken["yes"] = False
    retry = engine.run_inline(*actions.retry_from_failure(failed, None))

    assert statuses(retry) == {"optional": Status.SKIPPED, "fragile": Status.SUCCEEDED, "needs_both": Status.SKIPPED}
    assert errors(retry)["needs_both"] == "skipped: upstream step 'optional' was skipped"
