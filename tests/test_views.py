"""The web pages (app/views/): access rules, pipeline pages, triggering, run pages, htmx polls.

Runs are made in-process with the engine (`start_run`, `run_inline`), the same code the
worker runs; no worker process is started here.
"""

import datetime
import re

import pytest
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, get_resolver
from huey.contrib.djhuey import HUEY

from app.models import AuditEvent, Run, Status, StepRun
from app.pipelines.registry import pipeline, registry
from app.runs import engine
from app.web.access import POLICY_ATTR

pytestmark = pytest.mark.django_db

FANOUT_STEPS = {"load", "total", "mean", "spread", "report"}


def finished_run(pipeline_name, **params):
    run, ready = engine.start_run(pipeline_name, params)
    return engine.run_inline(run, ready)


def started_run(pipeline_name, **params):
    run, _ready = engine.start_run(pipeline_name, params)
    return run


def text(response):
    return response.content.decode()


def run_links(response):
    """Run ids in the order the runs table links to them."""
    return [int(pk) for pk in re.findall(r'<td><a href="/runs/(\d+)/">#\1</a></td>', text(response))]


def svg_steps(response):
    return set(re.findall(r'<g id="step-(\w+)" class="node step', text(response)))


@pytest.fixture
def empty_queue():
    HUEY.flush()
    yield HUEY
    HUEY.flush()


# --- access -----------------------------------------------------------------------------------

PAGES = [
    "/",
    "/pipelines/",
    "/pipelines/fanout_demo/",
    "/pipelines/fanout_demo/steps/load/",
    "/runs/",
    "/runs/1/",
    "/runs/1/steps/load/",
]


@pytest.mark.parametrize("path", PAGES)
def test_it_sends_anonymous_visitors_to_the_login_page(client, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={path}"


def test_it_sends_an_anonymous_trigger_to_the_login_page(client):
    response = client.post("/pipelines/fanout_demo/run/", {"rows": "10"})

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/pipelines/fanout_demo/run/"
    assert not Run.objects.exists()


def test_it_shows_the_login_page_to_anyone(client):
    response = client.get("/login/")

    assert response.status_code == 200
    assert "Log in" in text(response)
    assert 'name="password"' in text(response)


def test_it_declares_an_access_policy_on_every_view():
    undeclared = [
        str(pattern.pattern)
        for pattern in get_resolver().url_patterns
        if isinstance(pattern, URLPattern) and not hasattr(pattern.callback, POLICY_ATTR)
    ]

    assert undeclared == []


@pytest.mark.parametrize("path", ["/runs/", "/runs/{run}/", "/runs/{run}/steps/load/"])
def test_it_forbids_run_pages_to_stakeholders(stakeholder_client, path):
    run = started_run("fanout_demo")

    response = stakeholder_client.get(path.format(run=run.pk))

    assert response.status_code == 403
    assert "Only operators may open this page or do this." in text(response)


def test_it_forbids_stakeholders_to_start_a_run(stakeholder_client):
    response = stakeholder_client.post("/pipelines/fanout_demo/run/", {"rows": "10"})

    assert response.status_code == 403
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/pipelines/fanout_demo/run/"),
        ("post", "/"),
        ("post", "/pipelines/"),
        ("post", "/pipelines/fanout_demo/"),
        ("post", "/pipelines/fanout_demo/steps/load/"),
        ("post", "/runs/"),
        ("post", "/runs/{run}/"),
        ("post", "/runs/{run}/steps/load/"),
        ("get", "/logout/"),
    ],
)
def test_it_refuses_the_wrong_method(operator_client, method, path):
    run = started_run("fanout_demo")

    response = getattr(operator_client, method)(path.format(run=run.pk))

    assert response.status_code == 405
    assert Run.objects.count() == 1


def test_it_sends_an_operator_from_the_start_page_to_the_dashboard(operator_client):
    response = operator_client.get("/")

    assert (response.status_code, response["Location"]) == (302, "/dashboard/")


def test_it_sends_a_stakeholder_from_the_start_page_to_the_results(stakeholder_client):
    response = stakeholder_client.get("/")

    assert (response.status_code, response["Location"]) == (302, "/results/")


def test_it_lets_an_admin_see_the_runs(client, admin):
    client.force_login(admin)

    response = client.get("/runs/")

    assert response.status_code == 200


def test_it_logs_out_on_post(operator_client):
    response = operator_client.post("/logout/")

    assert (response.status_code, response["Location"]) == (302, "/login/")
    assert "_auth_user_id" not in operator_client.session


# --- pipeline pages -------------------------------------------------------------------------


def test_it_lists_the_example_pipelines_with_their_descriptions(operator_client):
    response = operator_client.get("/pipelines/")

    assert response.status_code == 200
    page = text(response)
    for name in ("fanout_demo", "flaky_demo", "train_classifier"):
        assert f'<a href="/pipelines/{name}/"><strong>{name}</strong></a>' in page
    assert "Generates numbers, summarises them three ways in parallel, and merges the summaries." in page
    assert "Broken pipeline definitions" not in page


def test_it_shows_the_latest_run_of_each_pipeline(operator_client):
    older = finished_run("flaky_demo")
    latest = finished_run("flaky_demo", fail="false")

    response = operator_client.get("/pipelines/")

    page = text(response)
    assert f'<a href="/runs/{latest.pk}/">#{latest.pk}</a>' in page
    assert f"#{older.pk}<" not in page
    assert page.count("never run") == 3  # fanout_demo, segment_report, train_classifier


def test_it_shows_pipelines_to_a_stakeholder_without_their_runs(stakeholder_client):
    run = finished_run("flaky_demo")

    response = stakeholder_client.get("/pipelines/")

    assert response.status_code == 200 and "flaky_demo" in text(response)
    assert f"#{run.pk}" not in text(response) and "failed" not in text(response)


def test_it_shows_the_parameter_form_with_defaults_to_an_operator(operator_client):
    response = operator_client.get("/pipelines/fanout_demo/")

    assert response.status_code == 200
    page = text(response)
    assert 'action="/pipelines/fanout_demo/run/"' in page
    assert re.search(r'<input type="number" name="rows" value="1000"[^>]* min="1" max="1000000"', page)
    assert re.search(r'<input type="number" name="seed" value="7"', page)
    assert "How many numbers to generate" in page
    assert "▶ Run fanout_demo" in page


def test_it_shows_parameters_but_no_run_button_to_a_stakeholder(stakeholder_client):
    response = stakeholder_client.get("/pipelines/train_classifier/")

    assert response.status_code == 200
    page = text(response)
    assert "<td>n_estimators</td><td>int</td><td>100</td>" in page
    assert "<td>dataset</td><td>choice</td><td>&#x27;iris&#x27;</td>" in page
    assert "Only operators can start runs." in page
    assert "▶ Run" not in page
    assert "/pipelines/train_classifier/run/" not in page


def test_it_draws_the_dag_with_one_node_per_step(operator_client):
    response = operator_client.get("/pipelines/fanout_demo/")

    assert svg_steps(response) == FANOUT_STEPS
    assert 'xlink:href="/pipelines/fanout_demo/steps/report/"' in text(response)
    assert "st-" not in re.search(r'<svg class="dag".*</svg>', text(response), re.S)[0]


def test_it_lists_the_steps_with_their_docstrings(operator_client):
    response = operator_client.get("/pipelines/fanout_demo/")

    page = text(response)
    assert "Generate the input rows (a deterministic pseudo-random sequence)." in page
    assert "Merge the three summaries into one report." in page
    assert "<code>total</code>, <code>mean</code>, <code>spread</code>" in page


def test_it_shows_a_step_with_its_docstring_and_source(stakeholder_client):
    response = stakeholder_client.get("/pipelines/fanout_demo/steps/report/")

    assert response.status_code == 200
    page = text(response)
    assert "Merge the three summaries into one report." in page
    assert "def report(ctx, total, mean, spread):" in page
    assert "summary = {&quot;total&quot;: total" in page  # source text is escaped
    assert '<a href="/pipelines/fanout_demo/steps/spread/"><code>spread</code></a>' in page
    assert "nothing (a last step)" in page


@pytest.fixture
def large_pipeline():
    """A chain of more steps than dag_svg lays out during a request."""
    pipe = pipeline("t_large", description="A long chain.")
    previous = []
    for i in range(201):
        previous = [pipe.step(after=previous, name=f"s{i}")(lambda ctx: None)]
    try:
        yield pipe
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)


def test_it_lays_out_a_large_dag_on_the_worker(stakeholder_client, large_pipeline, empty_queue):
    response = stakeholder_client.get("/pipelines/t_large/")

    assert response.status_code == 200
    assert "The picture of this large DAG is being laid out on the worker" in text(response)
    assert svg_steps(response) == set()
    assert [task.name for task in empty_queue.pending()] == ["render_layout"]


@pytest.mark.parametrize(
    "path, message",
    [
        ("/pipelines/nope/", "There is no pipeline named “nope”."),
        ("/pipelines/nope/steps/load/", "There is no pipeline named “nope”."),
        ("/pipelines/fanout_demo/steps/nope/", "Pipeline “fanout_demo” has no step named “nope”."),
    ],
)
def test_it_answers_404_naming_what_is_missing(stakeholder_client, path, message):
    response = stakeholder_client.get(path)

    assert response.status_code == 404
    assert message in text(response)
    assert "Traceback" not in text(response)


def test_it_escapes_the_name_in_a_404(stakeholder_client):
    response = stakeholder_client.get("/pipelines/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E/")

    assert response.status_code == 404
    assert "There is no pipeline named “&lt;img src=x onerror=alert(1)&gt;”." in text(response)
    assert "<img src=x" not in text(response)


@pytest.fixture
def broken_pipeline():
    """A pipeline with a definition problem in the global registry, for one test."""
    pipe = pipeline("t_broken", description="Waits for a step that does not exist.")

    @pipe.step(after=["missing"])
    def orphan(ctx):
        return 1

    try:
        yield pipe
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)


def test_it_answers_404_naming_the_definition_problem(operator_client, broken_pipeline):
    response = operator_client.get("/pipelines/t_broken/")

    assert response.status_code == 404
    assert "Pipeline “t_broken” has definition errors: step &#x27;orphan&#x27;: depends on unknown step" in text(
        response
    )


def test_it_lists_broken_definitions_apart(operator_client, broken_pipeline):
    response = operator_client.get("/pipelines/")

    page = text(response)
    assert "Pipelines that are not available" in page
    problem = "step &#x27;orphan&#x27;: depends on unknown step &#x27;missing&#x27;"
    assert f"<li><strong>t_broken</strong>: {problem}</li>" in page
    assert 'href="/pipelines/t_broken/"' not in page


# --- starting a run from the web ----------------------------------------------------------------


def test_it_starts_a_run_and_redirects_to_it(operator_client, operator):
    response = operator_client.post("/pipelines/fanout_demo/run/", {"rows": "20", "seed": "3"})

    run = Run.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/runs/{run.pk}/"
    assert (run.pipeline_name, run.params, run.status) == ("fanout_demo", {"rows": 20, "seed": 3, "pause": 0.0}, Status.QUEUED)
    assert (run.triggered_by, run.trigger_source) == (operator, "web")
    assert set(StepRun.objects.filter(run=run).values_list("step_name", flat=True)) == FANOUT_STEPS


def test_it_enqueues_the_first_step_once_the_run_is_committed(
    operator_client, django_capture_on_commit_callbacks, empty_queue
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        operator_client.post("/pipelines/fanout_demo/run/", {"rows": "20"})

    load = StepRun.objects.get(step_name="load")
    assert len(callbacks) == 1
    assert [(task.name, task.args) for task in empty_queue.pending()] == [("run_step", (load.pk,))]


def test_it_enqueues_nothing_before_the_run_is_committed(operator_client, empty_queue):
    response = operator_client.post("/pipelines/fanout_demo/run/", {"rows": "20"})

    assert response.status_code == 302
    assert Run.objects.count() == 1
    assert empty_queue.pending_count() == 0


def test_it_records_who_started_a_run_with_which_parameters(operator_client, operator):
    operator_client.post("/pipelines/fanout_demo/run/", {"rows": "20"})

    run = Run.objects.get()
    event = AuditEvent.objects.get()
    assert (event.user, event.action, event.target_id) == (operator, "trigger", str(run.pk))
    assert event.details == {"params": {"rows": 20, "seed": 7, "pause": 0.0}}


def test_it_records_nothing_for_a_refused_trigger(operator_client):
    operator_client.post("/pipelines/fanout_demo/run/", {"rows": "many"})

    assert not AuditEvent.objects.exists()


def test_it_says_the_run_started(operator_client):
    response = operator_client.post("/pipelines/flaky_demo/run/", {"fail": "false"}, follow=True)

    run = Run.objects.get()
    assert response.redirect_chain == [(f"/runs/{run.pk}/", 302)]
    assert f"Run #{run.pk} of flaky_demo started." in text(response)
    assert run.params == {"fail": False, "transient_failures": 0}


def test_it_uses_the_defaults_for_absent_parameters(operator_client):
    operator_client.post("/pipelines/train_classifier/run/", {"n_estimators": "10"})

    assert Run.objects.get().params == {
        "dataset": "iris",
        "n_estimators": 10,
        "max_depth": 5,
        "test_size": 0.25,
        "seed": 42,
    }


def test_it_refuses_a_post_without_csrf_token(operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)

    response = client.post("/pipelines/fanout_demo/run/", {"rows": "10"})

    assert response.status_code == 403
    assert not Run.objects.exists()


def test_it_shows_the_form_again_with_the_error_for_a_bad_parameter(operator_client, empty_queue):
    response = operator_client.post("/pipelines/fanout_demo/run/", {"rows": "abc", "seed": "1"})

    assert response.status_code == 422
    page = text(response)
    assert '<small class="error">&#x27;abc&#x27; is not a whole number</small>' in page
    assert re.search(r'<input type="number" name="rows" value="abc"', page)
    assert svg_steps(response) == FANOUT_STEPS
    assert not Run.objects.exists()
    assert empty_queue.pending_count() == 0


def test_it_shows_an_out_of_bounds_parameter_error(operator_client):
    response = operator_client.post("/pipelines/train_classifier/run/", {"test_size": "0.95"})

    assert response.status_code == 422
    assert "0.95 is above the maximum 0.9" in text(response)
    assert not Run.objects.exists()


def test_it_shows_an_unknown_choice_error(operator_client):
    response = operator_client.post("/pipelines/train_classifier/run/", {"dataset": "mnist"})

    assert response.status_code == 422
    assert (
        '<small class="error">&#x27;mnist&#x27; is not one of &#x27;iris&#x27;, &#x27;wine&#x27;, '
        "&#x27;breast_cancer&#x27;</small>"
    ) in text(response)
    assert not Run.objects.exists()


def test_it_shows_one_error_for_an_unknown_choice(operator_client):
    response = operator_client.post("/pipelines/train_classifier/run/", {"dataset": "mnist"})

    assert response.status_code == 422
    assert text(response).count('<small class="error">') == 1


def test_it_answers_404_when_triggering_an_unknown_pipeline(operator_client):
    response = operator_client.post("/pipelines/nope/run/", {})

    assert response.status_code == 404
    assert "There is no pipeline named “nope”." in text(response)
    assert not Run.objects.exists()


# --- the run list ---------------------------------------------------------------------------


def seed_runs(count, pipeline_name="fanout_demo", status=Status.SUCCEEDED):
    """Runs in the database without executing anything (list pages only read run rows)."""
    snapshot = engine.snapshot_for(registry.get(pipeline_name))
    return Run.objects.bulk_create(
        Run(snapshot=snapshot, pipeline_name=pipeline_name, status=status, steps_total=5, steps_finished=5)
        for _ in range(count)
    )


def test_it_lists_runs_newest_first(operator_client):
    first, second = finished_run("flaky_demo"), finished_run("fanout_demo", rows=5)
    third = started_run("flaky_demo")

    response = operator_client.get("/runs/")

    assert response.status_code == 200
    assert run_links(response) == [third.pk, second.pk, first.pk]
    assert "3 runs" in text(response)


def test_it_filters_runs_by_pipeline(operator_client):
    flaky = finished_run("flaky_demo")
    finished_run("fanout_demo", rows=5)

    response = operator_client.get("/runs/?pipeline=flaky_demo")

    assert run_links(response) == [flaky.pk]


def test_it_filters_runs_by_status(operator_client):
    failed = finished_run("flaky_demo")
    finished_run("flaky_demo", fail="false")
    started_run("flaky_demo")

    response = operator_client.get("/runs/?status=failed")

    assert run_links(response) == [failed.pk]


def test_it_shows_a_bad_filter_value_and_lists_all_runs(operator_client):
    runs = seed_runs(2)

    response = operator_client.get("/runs/?status=exploded&pipeline=fanout_demo")

    assert response.status_code == 200
    assert "These filters were ignored" in text(response)
    assert '<li id="id_status_error">Status: Select a valid choice. exploded is not one of the available choices.</li>' in text(response)
    assert run_links(response) == [runs[1].pk, runs[0].pk]


def test_it_shows_the_newest_25_runs_on_the_first_page(operator_client):
    runs = seed_runs(30)

    response = operator_client.get("/runs/")

    assert run_links(response) == [run.pk for run in reversed(runs[5:])]
    assert "Page 1 of 2 · 30 runs" in text(response)
    assert '<a href="?page=2">Older →</a>' in text(response)


def test_it_shows_the_oldest_runs_on_the_last_page(operator_client):
    runs = seed_runs(30)

    response = operator_client.get("/runs/?page=2")

    assert run_links(response) == [run.pk for run in reversed(runs[:5])]
    assert '<a href="?page=1">← Newer</a>' in text(response)


def test_it_keeps_the_filter_in_the_page_links(operator_client):
    seed_runs(30, "flaky_demo")

    response = operator_client.get("/runs/?pipeline=flaky_demo")

    assert '<a href="?pipeline=flaky_demo&amp;page=2">Older →</a>' in text(response)


def test_it_shows_the_first_page_for_a_bad_page_number(operator_client):
    seed_runs(3)

    response = operator_client.get("/runs/?page=abc")

    assert response.status_code == 200
    assert "Page 1 of 1 · 3 runs" in text(response)


def test_it_polls_the_run_list_while_a_run_is_unfinished(operator_client):
    started_run("fanout_demo")

    response = operator_client.get("/runs/", headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert 'hx-trigger="every 2s"' in text(response)
    assert "<h1>Runs</h1>" not in text(response)  # the live part only
    assert "HX-Request" in response["Vary"]


def test_it_polls_the_run_list_slowly_when_every_run_finished(operator_client):
    finished_run("flaky_demo")

    response = operator_client.get("/runs/", headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert 'hx-trigger="every 10s"' in text(response)  # a run started elsewhere still appears
    assert "HX-Request" in response["Vary"]


def test_it_varies_the_full_run_list_on_htmx(operator_client):
    response = operator_client.get("/runs/")

    assert response.status_code == 200
    assert "HX-Request" in response["Vary"]
    assert "No runs yet." in text(response)


# --- the run page ---------------------------------------------------------------------------


def test_it_shows_progress_status_and_steps_of_a_running_run(operator_client):
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})
    engine.execute_step(ready[0])

    response = operator_client.get(f"/runs/{run.pk}/")

    assert response.status_code == 200
    page = text(response)
    assert '<span class="label">1/5 · 20%</span>' in page
    assert '<span class="badge big st-running" id="run-status" role="status">running</span>' in page
    for name in FANOUT_STEPS:
        assert f'<a href="/runs/{run.pk}/steps/{name}/"><code>{name}</code></a>' in page
    assert 'hx-trigger="every 1s"' in page


def test_it_asks_whether_a_worker_runs_when_a_run_waits_too_long(operator_client):
    run = started_run("fanout_demo")
    Run.objects.filter(pk=run.pk).update(created_at=run.created_at - datetime.timedelta(minutes=2))

    response = operator_client.get(f"/runs/{run.pk}/")

    assert response.status_code == 200
    assert "No step has started since 2\xa0minutes. Is a worker running?" in text(response)


def test_it_does_not_worry_about_a_run_queued_a_moment_ago(operator_client):
    run = started_run("fanout_demo")

    response = operator_client.get(f"/runs/{run.pk}/")

    assert "Is a worker running?" not in text(response)


def test_it_colours_the_dag_by_step_status(operator_client):
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})
    engine.execute_step(ready[0])

    response = operator_client.get(f"/runs/{run.pk}/")

    classes = dict(re.findall(r'<g id="step-(\w+)" class="node step (st-\w+)"', text(response)))
    assert classes == {
        "load": "st-succeeded",
        "total": "st-queued",
        "mean": "st-queued",
        "spread": "st-queued",
        "report": "st-pending",
    }


def test_it_shows_parameters_and_metrics_of_a_run(operator_client):
    run = finished_run("fanout_demo", rows="10", seed="3")

    response = operator_client.get(f"/runs/{run.pk}/")

    page = text(response)
    assert "<tr><td>rows</td><td><code>10</code></td></tr>" in page
    assert re.search(r"<td>mean</td><td class=\"num\">[\d.]+</td><td class=\"muted\">mean</td>", page)
    assert re.search(r"<td>stdev</td><td class=\"num\">[\d.]+</td><td class=\"muted\">spread</td>", page)
    assert "hx-trigger" not in page


def test_it_shows_the_failure_of_a_failed_run(operator_client):
    run = finished_run("flaky_demo")

    response = operator_client.get(f"/runs/{run.pk}/")

    assert response.status_code == 200
    page = text(response)
    assert '<span class="label">4/4 · failed</span>' in page
    assert '<span class="badge big st-failed" id="run-status" role="status">failed</span>' in page
    assert '<pre class="log traceback" tabindex="0">Traceback (most recent call last):' in page
    assert "ValueError: 1 record(s) have a negative amount: ids [5]" in page
    assert "records with negative amounts: [5]" in page
    classes = dict(re.findall(r'<g id="step-(\w+)" class="node step (st-\w+)"', page))
    assert classes["publish"] == "st-upstream_failed"


def test_it_escapes_what_a_step_logged(operator_client):
    run = finished_run("flaky_demo")
    StepRun.objects.filter(run=run, step_name="extract").update(log="<script>alert('log')</script>\n")
    StepRun.objects.filter(run=run, step_name="validate").update(error="<b>bad</b>")

    response = operator_client.get(f"/runs/{run.pk}/")

    page = text(response)
    assert "&lt;script&gt;alert(&#x27;log&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;bad&lt;/b&gt;" in page
    assert "<script>alert(" not in page
    assert "<b>bad</b>" not in page


def test_it_answers_404_for_an_unknown_run(operator_client):
    response = operator_client.get("/runs/999/")

    assert response.status_code == 404
    assert "There is no run #999." in text(response)


def test_it_polls_an_unfinished_run_without_logs(operator_client):
    run, ready = engine.start_run("flaky_demo")
    engine.execute_step(ready[0])

    response = operator_client.get(f"/runs/{run.pk}/", headers={"HX-Request": "true"})

    assert response.status_code == 200
    page = text(response)
    assert page.lstrip().startswith('<div id="run-live"')
    assert f'hx-get="/runs/{run.pk}/" hx-trigger="every 1s"' in page
    assert 'id="run-logs"' not in page
    assert "HX-Request" in response["Vary"]


def test_it_stops_polling_a_finished_run_and_sends_its_logs_once(operator_client):
    run = finished_run("flaky_demo")

    response = operator_client.get(f"/runs/{run.pk}/", headers={"HX-Request": "true"})

    assert response.status_code == 286
    page = text(response)
    assert "hx-trigger" not in page
    assert '<section class="card" id="run-logs" hx-swap-oob="true">' in page
    assert "ValueError: 1 record(s) have a negative amount" in page
    assert "HX-Request" in response["Vary"]


# --- the step run page ----------------------------------------------------------------------


def test_it_shows_a_failed_step_with_traceback_log_and_source(operator_client):
    run = finished_run("flaky_demo")

    response = operator_client.get(f"/runs/{run.pk}/steps/validate/")

    assert response.status_code == 200
    page = text(response)
    assert '<p class="errors">ValueError: 1 record(s) have a negative amount: ids [5]</p>' in page
    assert '<pre class="log traceback" tabindex="0">Traceback (most recent call last):' in page
    assert "records with negative amounts: [5]" in page
    assert "Reject the batch if any record has a negative amount." in page
    assert "def validate(ctx, extract):" in page
    assert "hx-trigger" not in page


def test_it_shows_a_step_that_has_not_started(operator_client):
    run = started_run("fanout_demo")

    response = operator_client.get(f"/runs/{run.pk}/steps/report/")

    assert response.status_code == 200
    page = text(response)
    assert "<dt>Attempt</dt><dd>not started</dd>" in page
    assert "Nothing logged yet; what the step prints appears here as it runs." in page
    assert f'hx-get="/runs/{run.pk}/steps/report/" hx-trigger="every 1s"' in page


def test_it_answers_404_for_an_unknown_step_of_a_run(operator_client):
    run = started_run("fanout_demo")

    response = operator_client.get(f"/runs/{run.pk}/steps/nope/")

    assert response.status_code == 404
    assert f"Run #{run.pk} has no step named “nope”." in text(response)


def test_it_stops_polling_a_finished_step(operator_client):
    run = finished_run("flaky_demo")

    response = operator_client.get(f"/runs/{run.pk}/steps/archive/", headers={"HX-Request": "true"})

    assert response.status_code == 286
    assert "hx-trigger" not in text(response)
    assert "HX-Request" in response["Vary"]


def test_a_poll_of_a_scheduled_run_costs_no_more_queries_than_of_a_manual_one(operator_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from app.models import Schedule, ScheduledSlot

    manual = engine.start_run("flaky_demo")[0]
    scheduled = engine.start_run("flaky_demo")[0]
    schedule = Schedule.objects.create(pipeline_name="flaky_demo", name="nightly", cron="0 2 * * *")
    ScheduledSlot.objects.create(schedule=schedule, slot=timezone.now(), outcome="started", run=scheduled)

    def poll(run):
        with CaptureQueriesContext(connection) as queries:
            page = text(operator_client.get(f"/runs/{run.pk}/", headers={"HX-Request": "true"}))
        return page, len(queries)

    poll(manual)  # warm caches (the DAG layout, the session)
    manual_page, manual_queries = poll(manual)
    scheduled_page, scheduled_queries = poll(scheduled)
    assert "Scheduled by" in scheduled_page and "“nightly”" in scheduled_page and "Scheduled by" not in manual_page
    assert scheduled_queries <= manual_queries
