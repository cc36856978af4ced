"""Caching (app/runs/cache.py): `@p.step(cache=True)` reuses an earlier output when the
step's code, its inputs and the parameters it reads are the same."""

import pytest

from app import artifacts
from app.models import Run, Status, StepRun
from app.pipelines import Params, param
from app.pipelines.registry import registry
from app.runs import engine, tasks
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_run_files(remove_run_files):
    """Outputs of this test's runs go with it: a later test's run may get the same id."""


class Settings(Params):
    rows: int = param(3)
    scale: int = param(1)
    label: str = param("x")


CALLS = []


def define_cached(define, name="t_cache", body=None):
    """The pipeline; `body` replaces the cached step's function (a code change)."""
    for old in [p for p in registry.defined if p.name == name]:
        registry.defined.remove(old)
    pipe = define(name, params=Settings)

    @pipe.step()
    def rows(ctx):
        return list(range(ctx.params.rows))

    def scaled(ctx, rows):
        CALLS.append("scaled")
        return [r * ctx.params.scale for r in rows]

    pipe.step(name="scaled", cache=True)(body or scaled)

    @pipe.step()
    def label(ctx, scaled):
        return f"{ctx.params.label}: {sum(scaled)}"

    return pipe


def run(params=None, **options):
    return engine.run_inline(*engine.start_run("t_cache", params or {}, **options))


def step(run, name):
    return StepRun.objects.get(run=run, step_name=name)


def output(run, name):
    step_run = step(run, name)
    return artifacts.load_output(step_run.output_path, step_run.output_inline)


@pytest.fixture(autouse=True)
def forget_calls():
    CALLS.clear()


def test_the_same_inputs_and_parameters_reuse_the_output(define):
    define_cached(define)
    first = run({"scale": 2})
    second = run({"scale": 2, "label": "y"})  # a parameter the cached step does not read

    assert CALLS == ["scaled"]
    cached = step(second, "scaled")
    assert (cached.status, cached.reused_from.run_id) == (Status.SUCCEEDED, first.pk)
    assert output(second, "label") == "y: 6"
    assert step(first, "scaled").params_read == {"scale": 2}  # only what it read


def test_a_parameter_it_reads_changed_runs_it_again(define):
    define_cached(define)
    run({"scale": 2})
    second = run({"scale": 3})

    assert CALLS == ["scaled", "scaled"]
    assert step(second, "scaled").reused_from is None and output(second, "label") == "x: 9"


def test_an_input_changed_runs_it_again(define):
    define_cached(define)
    run({"rows": 3})
    second = run({"rows": 4})  # rows is not read by the cached step, but its input changes

    assert CALLS == ["scaled", "scaled"]
    assert output(second, "label") == "x: 6"


def test_its_code_changed_runs_it_again(define):
    define_cached(define)
    run()

    def scaled(ctx, rows):
        CALLS.append("scaled v2")
        return [r * ctx.params.scale + 1 for r in rows]

    define_cached(define, body=scaled)
    second = run()

    assert CALLS == ["scaled", "scaled v2"]
    assert output(second, "label") == "x: 6"


def test_ignore_cache_runs_it_again_and_caches_the_new_output(define):
    define_cached(define)
    run()
    again = engine.run_inline(*engine.start_run("t_cache", {}, ignore_cache=True))
    third = run()

    assert CALLS == ["scaled", "scaled"]
    assert step(third, "scaled").reused_from_id in (step(again, "scaled").pk, step(Run.objects.first(), "scaled").pk)


def test_a_key_function_decides_alone(define):
    pipe = define("t_cache_key", params=Settings)

    @pipe.step(cache=lambda ctx: f"v1-{ctx.params.label}")
    def expensive(ctx):
        CALLS.append(ctx.params.scale)
        return ctx.params.scale

    first = engine.run_inline(*engine.start_run("t_cache_key", {"scale": 1}))
    second = engine.run_inline(*engine.start_run("t_cache_key", {"scale": 5}))  # same key: reused
    third = engine.run_inline(*engine.start_run("t_cache_key", {"label": "other"}))

    assert CALLS == [1, 1]
    assert step(second, "expensive").reused_from.run_id == first.pk
    assert step(third, "expensive").reused_from is None


def test_cached_items_of_a_map_skip_the_batches_done_before(define):
    """The recipe for "process only new batches": a cached map over the batches."""
    pipe = define("t_cache_batches", params=Settings)

    @pipe.step()
    def batches(ctx):
        return [f"2026-12-0{day}" for day in range(1, ctx.params.rows + 1)]

    @pipe.map(over=batches, cache=True)
    def process(ctx, batches):
        CALLS.append(batches)
        return len(batches)

    engine.run_inline(*engine.start_run("t_cache_batches", {"rows": 2}))
    later = engine.run_inline(*engine.start_run("t_cache_batches", {"rows": 4}))

    assert CALLS == ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"]
    reused = dict(StepRun.objects.filter(run=later, map_of__isnull=False).values_list("step_name", "reused_from"))
    assert [name for name, source in sorted(reused.items()) if source] == ["process[0]", "process[1]"]


def test_the_step_page_says_where_the_output_came_from(define, operator_client):
    define_cached(define)
    first = run()
    second = run()

    page = operator_client.get(f"/runs/{second.pk}/steps/scaled/").content.decode()

    assert f"Output reused from <a href=\"/runs/{first.pk}/steps/scaled/\">run #{first.pk}</a>" in page


API = "tests.fixtures.api_pipelines"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_reuses_a_cached_output_from_a_step_process(start_worker, settings):
    registry.discover(API)
    try:
        start_worker(PIPELINES_PACKAGE=API)
        finished = []
        for _ in range(2):
            started, ready = engine.start_run("t_cached", {"n": 3})
            tasks.enqueue(ready)
            finished.append(wait_for(lambda: Run.objects.filter(pk=started.pk, finished_at__isnull=False).first(),
                                     timeout=60, message="the run to finish"))
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)

    first, second = finished
    assert (first.status, second.status) == (Status.SUCCEEDED, Status.SUCCEEDED)
    assert step(second, "slow_square").reused_from.run_id == first.pk
    assert output(second, "total") == output(first, "total") == 0 + 1 + 4
    assert "reused the output of run" in step(second, "slow_square").log


def test_the_run_form_ignores_the_cache_when_asked(define, operator_client):
    define_cached(define)
    first = run()

    form = operator_client.get("/pipelines/t_cache/").content.decode()
    operator_client.post("/pipelines/t_cache/run/", {"run-ignore_cache": "on"})

    assert "Ignore cache" in form
    latest = Run.objects.exclude(pk=first.pk).get()
    assert latest.ignore_cache is True


def test_the_run_form_has_no_ignore_cache_without_a_cached_step(operator_client):
    assert "Ignore cache" not in operator_client.get("/pipelines/fanout_demo/").content.decode()


def test_the_api_starts_a_run_that_ignores_the_cache(define, client, operator):
    from app.api import tokens

    define_cached(define)
    secret = tokens.create(operator, "ci", scopes=["runs:read", "runs:write"])[1]

    answer = client.post("/api/pipelines/t_cache/runs", {"ignore_cache": True}, content_type="application/json",
                         HTTP_AUTHORIZATION=f"Bearer {secret}")

    assert answer.status_code == 201, answer.content
    assert Run.objects.get(pk=answer.json()["run"]["id"]).ignore_cache is True
