"""Sub-pipelines (app/runs/children.py): a step that runs another pipeline as a child run,
without holding a worker thread while it waits."""

import pytest

from app import artifacts
from app.models import Run, Status, StepRun
from app.pipelines import Params, param
from app.pipelines.registry import Registry
from app.runs import actions, engine
from tests.conftest import run_on_worker

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_run_files(remove_run_files):
    """Outputs of this test's runs go with it: a later test's run may get the same id."""


class ChildParams(Params):
    factor: int = param(2, ge=1, le=10)
    fail: bool = param(False)


def output_of(run, name):
    step_run = StepRun.objects.get(run=run, step_name=name)
    return artifacts.load_output(step_run.output_path, step_run.output_inline)


def family(define, factor=3):
    child = define("t_child", params=ChildParams)

    @child.step()
    def numbers(ctx):
        return [1, 2, 3]

    @child.step()
    def scaled(ctx, numbers):
        if ctx.params.fail:
            raise RuntimeError("the child broke")
        return [n * ctx.params.factor for n in numbers]

    parent = define("t_parent")

    @parent.step()
    def prepare(ctx):
        return factor

    @parent.subpipeline("t_child")
    def run_child(ctx, prepare):
        return {"factor": prepare, "fail": prepare == 9}

    @parent.step()
    def report(ctx, run_child):
        return sum(run_child)

    return parent


def test_a_child_run_runs_and_its_result_goes_on_in_the_parent(define):
    family(define)

    run = engine.run_inline(*engine.start_run("t_parent", tags=["team:ml"]))

    assert run.status == Status.SUCCEEDED
    step = StepRun.objects.get(run=run, step_name="run_child")
    [child] = Run.objects.filter(parent_step=step)
    assert (child.pipeline_name, child.status, child.params["factor"], child.trigger_source) == (
        "t_child", Status.SUCCEEDED, 3, "parent",
    )
    assert list(child.tags.values_list("name", flat=True)) == ["team:ml"]
    assert output_of(run, "run_child") == [3, 6, 9]
    assert output_of(run, "report") == 18


def test_a_failed_child_fails_the_step_naming_the_child_and_its_failure(define):
    family(define, factor=9)

    run = engine.run_inline(*engine.start_run("t_parent"))

    step = StepRun.objects.get(run=run, step_name="run_child")
    child = Run.objects.get(parent_step=step)
    assert (run.status, step.status, child.status) == (Status.FAILED, Status.FAILED, Status.FAILED)
    assert step.error == f"child run #{child.pk} of t_child failed: step scaled failed: RuntimeError: the child broke"
    assert StepRun.objects.get(run=run, step_name="report").status == Status.UPSTREAM_FAILED


def test_parameters_the_child_refuses_fail_the_step_and_start_nothing(define):
    child = define("t_child", params=ChildParams)

    @child.step()
    def only(ctx):
        return 1

    parent = define("t_parent")

    @parent.subpipeline("t_child")
    def start_it(ctx):
        return {"factor": 99}

    run = engine.run_inline(*engine.start_run("t_parent"))

    step = StepRun.objects.get(run=run, step_name="start_it")
    assert step.status == Status.FAILED
    assert step.error.startswith("could not start the child run of 't_child': ")
    assert "factor" in step.error and not Run.objects.filter(pipeline_name="t_child").exists()


def test_cancelling_the_parent_cancels_its_child(define):
    family(define)
    run, ready = engine.start_run("t_parent")
    ready = engine.execute_step(ready[0])  # prepare
    child_first = engine.execute_step(ready[0])  # run_child: starts the child
    child = Run.objects.get(parent_step__run=run)
    assert StepRun.objects.get(run=run, step_name="run_child").status == Status.AWAITING
    assert len(child_first) == 1

    actions.cancel(Run.objects.get(pk=run.pk), None)

    run.refresh_from_db()
    child.refresh_from_db()
    assert (run.status, child.status) == (Status.CANCELLED, Status.CANCELLED)
    assert StepRun.objects.get(run=run, step_name="run_child").status == Status.CANCELLED


def test_an_unknown_child_pipeline_or_a_cycle_is_a_definition_problem():
    from app.pipelines.registry import Pipeline

    found = Registry()
    a, b, c = Pipeline(name="a", module="m"), Pipeline(name="b", module="m"), Pipeline(name="c", module="m")
    for pipe, child in ((a, "b"), (b, "a"), (c, "nowhere")):
        pipe.subpipeline(child)(lambda ctx: None)
        found.add(pipe)

    problems = found.problems()

    assert "step '<lambda>' runs pipeline 'nowhere' as a child run, but no pipeline of that name is defined" in problems["c"]
    assert any(p.startswith("its sub-pipelines run it again: ") for p in problems["a"])
    assert any(p.startswith("its sub-pipelines run it again: ") for p in problems["b"])


def test_the_run_pages_link_parent_and_child(define, operator_client):
    family(define)
    run = engine.run_inline(*engine.start_run("t_parent"))
    child = Run.objects.get(parent_step__run=run)

    parent_page = operator_client.get(f"/runs/{run.pk}/").content.decode()
    child_page = operator_client.get(f"/runs/{child.pk}/").content.decode()
    step_page = operator_client.get(f"/runs/{run.pk}/steps/run_child/").content.decode()

    assert f'href="/runs/{child.pk}/"' in parent_page and "Child runs" in parent_page
    assert f'href="/runs/{run.pk}/steps/run_child/"' in child_page and "Child run of" in child_page
    assert f'href="/runs/{child.pk}/"' in step_page


API = "tests.fixtures.api_pipelines"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_one_worker_thread_runs_a_parent_and_its_child_without_deadlock(start_worker):
    run = run_on_worker(start_worker, API, "t_parent_run", HUEY_WORKERS="1")

    assert run.status == Status.SUCCEEDED
    child = Run.objects.get(parent_step__run=run)
    assert child.status == Status.SUCCEEDED
    assert output_of(run, "total") == sum(n * 4 for n in range(5))
    # the child ran while its parent step waited, on the worker's only thread
    assert {sr.worker.rsplit(":", 1)[1] for sr in StepRun.objects.filter(run__in=[run, child])} == {"Worker-1"}
