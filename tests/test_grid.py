"""The runs × steps grid of a pipeline (Airflow's grid view) and its duration trend.

Runs are made in-process with the engine (`start_run`, `run_inline`), the code the worker runs.
"""

import re

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from app.models import StepRun
from app.pipelines.registry import registry
from app.runs import engine

pytestmark = pytest.mark.django_db

FANOUT_ORDER = [step["name"] for step in registry.get("fanout_demo").snapshot()["steps"]]


def finished(name, **params):
    return engine.run_inline(*engine.start_run(name, params))


def started(name, **params):
    return engine.start_run(name, params)[0]


def html(response):
    return response.content.decode()


def grid_table(page):
    return page[page.index('<table class="run-grid">'):page.index("</table>", page.index('<table class="run-grid">'))]


def column_runs(page) -> list[int]:
    """The run ids of the grid's columns, left to right."""
    return [int(n) for n in re.findall(r'<span class="grid-run-id">#(\d+)</span>', grid_table(page))]


def row_of(page, step):
    table = grid_table(page)
    start = table.index(f"<code>{step}</code>")
    return table[start:table.index("</tr>", start)]


def test_it_shows_a_square_per_step_run_with_its_status_icon_link_and_title(operator_client):
    run = finished("fanout_demo", rows="5")

    response = operator_client.get("/pipelines/fanout_demo/grid/")

    assert response.status_code == 200
    load = row_of(html(response), "load")
    assert f'<a class="gcell st-succeeded" href="/runs/{run.pk}/steps/load/"' in load
    assert re.search(rf'title="load · run #{run.pk}: ✓ succeeded in [\d.]+ s"', load)
    assert ">✓</a>" in load  # the icon, not colour alone


def test_it_lists_the_steps_in_topological_order_and_the_runs_oldest_first(operator_client):
    first, second = finished("fanout_demo", rows="5"), finished("fanout_demo", rows="6")
    third = started("fanout_demo")

    page = html(operator_client.get("/pipelines/fanout_demo/grid/"))

    assert column_runs(page) == [first.pk, second.pk, third.pk]  # newest on the right, as in Airflow
    steps = re.findall(r'<th scope="row" class="grid-step">\s*<a href="/pipelines/fanout_demo/steps/(\w+)/">', page)
    assert steps == FANOUT_ORDER
    assert '<span class="gcell st-queued" aria-label="… queued">…</span>' in page  # the unfinished run's head
    assert f'title="load · run #{third.pk}: … queued"' in row_of(page, "load")


def test_it_keeps_the_steps_only_old_runs_have_as_no_longer_defined(operator_client, define):
    old_pipe = define("t_grid_change")

    @old_pipe.step()
    def extract(ctx):
        return 1

    @old_pipe.step(after=[extract])
    def publish(ctx, extract):
        return extract

    old = finished("t_grid_change")
    registry.discover(settings.PIPELINES_PACKAGE)
    new_pipe = define("t_grid_change")

    @new_pipe.step()
    def extract(ctx):  # noqa: F811 — the same step in the new definition
        return 1

    @new_pipe.step(after=[extract])
    def report(ctx, extract):
        return extract

    new = finished("t_grid_change")

    page = html(operator_client.get("/pipelines/t_grid_change/grid/"))

    gone = row_of(page, "publish")
    assert "no longer defined" in gone and 'href="/pipelines/t_grid_change/steps/publish/"' not in gone
    assert f'href="/runs/{old.pk}/steps/publish/"' in gone and 'title="not a step of this run"' in gone
    assert "no longer defined" not in row_of(page, "report")
    assert f'href="/runs/{new.pk}/steps/report/"' in row_of(page, "report")
    names = re.findall(r'<th scope="row" class="grid-step">\s*(?:<a [^>]*>)?<code>(\w+)</code>', page)
    assert names == ["extract", "report", "publish"]


def test_it_shows_the_last_n_runs(operator_client):
    runs = [started("fanout_demo") for _ in range(4)]

    page = html(operator_client.get("/pipelines/fanout_demo/grid/?n=2"))

    assert column_runs(page) == [runs[2].pk, runs[3].pk]
    assert 'name="n" min="1" max="100" value="2"' in page


@pytest.mark.parametrize("bad", ["abc", "0", "101", "-3", "²"])
def test_it_says_a_bad_n_is_bad_and_shows_the_default(operator_client, bad):
    runs = [started("fanout_demo") for _ in range(27)]

    page = html(operator_client.get("/pipelines/fanout_demo/grid/", {"n": bad}))

    assert f"“{bad}” is not a number of runs from 1 to 100; showing the last 25." in page
    assert column_runs(page) == [run.pk for run in runs[2:]]


def test_it_says_when_a_pipeline_has_not_run(operator_client):
    page = html(operator_client.get("/pipelines/fanout_demo/grid/"))

    assert "fanout_demo has not run yet." in page and "no finished run yet" in page


def test_it_charts_how_long_each_run_took(operator_client):
    good = finished("fanout_demo", rows="5")
    bad = finished("flaky_demo")
    running = started("flaky_demo")

    page = html(operator_client.get("/pipelines/flaky_demo/grid/"))

    trend = page[page.index('id="trend"'):]
    wide = trend[:trend.index("</svg>")]
    assert re.search(rf"<title>run #{bad.pk} · [A-Z][a-z]{{2}} \d+ \d\d:\d\d · ✗ failed · [\d.]+ s</title>", wide)
    assert f"run #{running.pk}" not in wide  # no bar before it finishes
    assert f"run #{good.pk}" not in wide  # another pipeline's
    assert "✗ failed</span>" in trend  # the legend names the marker's shape


def test_it_reads_two_queries_of_runs_and_step_runs_however_many_runs(operator_client, django_assert_max_num_queries):
    finished("fanout_demo", rows="5")
    for _ in range(2):
        started("fanout_demo")
    operator_client.get("/dashboard/")  # a session's first request also saves the session
    with CaptureQueriesContext(connection) as three:
        assert operator_client.get("/pipelines/fanout_demo/grid/").status_code == 200
    for _ in range(27):
        started("fanout_demo")

    with django_assert_max_num_queries(len(three)) as thirty:
        page = html(operator_client.get("/pipelines/fanout_demo/grid/?n=30"))

    assert len(column_runs(page)) == 30 and len(thirty) == len(three)
    step_queries = [q["sql"] for q in thirty.captured_queries if 'FROM "app_steprun"' in q["sql"]]
    assert len(step_queries) == 1
    assert all(column not in step_queries[0] for column in ('"log"', '"traceback"', '"output_inline"', '"output_path"'))
    assert StepRun.objects.count() == 30 * len(FANOUT_ORDER)


def test_the_pipeline_page_links_operators_to_the_grid(operator_client):
    page = html(operator_client.get("/pipelines/fanout_demo/"))

    assert 'href="/pipelines/fanout_demo/grid/"' in page


def test_the_pipeline_page_has_no_grid_link_for_stakeholders(stakeholder_client):
    page = html(stakeholder_client.get("/pipelines/fanout_demo/"))

    assert "/grid/" not in page


def test_it_keeps_the_grid_from_stakeholders(stakeholder_client):
    assert stakeholder_client.get("/pipelines/fanout_demo/grid/").status_code == 403


def test_it_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get("/pipelines/fanout_demo/grid/")

    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_it_answers_a_post_with_405(operator_client):
    assert operator_client.post("/pipelines/fanout_demo/grid/").status_code == 405


def test_it_answers_404_for_a_pipeline_that_does_not_exist(operator_client):
    response = operator_client.get("/pipelines/nope/grid/")

    assert response.status_code == 404 and "There is no pipeline named “nope”." in html(response)
