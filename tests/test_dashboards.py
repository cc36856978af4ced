"""The operator home ("is anything broken?") and the stakeholder results."""

import datetime

import pytest
from django.utils import timezone
from huey.contrib.djhuey import HUEY

from app.models import Run, WorkerHeartbeat
from app.runs import actions, engine, tasks

pytestmark = pytest.mark.django_db

SECRET_TRACEBACK = "ValueError: 1 record(s) have a negative amount"
SECRET_LOG = "extracted 6 records"


def finished(name, **params):
    return engine.run_inline(*engine.start_run(name, params))


def html(response):
    return response.content.decode()


@pytest.fixture
def empty_queue():
    HUEY.flush()
    yield
    HUEY.flush()


# --- operator home -----------------------------------------------------------------------------


def test_it_counts_what_is_broken_and_what_runs(operator_client, empty_queue):
    finished("flaky_demo")  # the latest flaky_demo run failed
    finished("fanout_demo", rows="5")
    _run, ready = engine.start_run("train_classifier", {})  # in progress
    engine.start_run("fanout_demo", {})  # in progress, and now the latest fanout_demo run
    tasks.enqueue(ready * 3)  # three tasks waiting

    page = html(operator_client.get("/dashboard/"))

    assert '<div class="value">1</div><div class="label">pipelines whose latest run failed' in page
    assert '<div class="value">2</div><div class="label">runs in progress' in page
    assert '<div class="value">3</div><div class="label">tasks waiting in the queue' in page
    assert '<div class="value">50%</div>' in page and "(2 finished runs)" in page


def test_it_leaves_cancelled_runs_out_of_the_success_rate(operator_client, operator):
    finished("fanout_demo", rows="5")
    run, _ready = engine.start_run("fanout_demo", {})
    actions.cancel(run, operator)

    assert '<div class="value">100%</div>' in html(operator_client.get("/dashboard/"))


def test_it_shows_a_recent_worker_as_alive(operator_client):
    WorkerHeartbeat.objects.create(name="box:101", last_seen=timezone.now() - datetime.timedelta(seconds=3),
                                   queue="gpu", threads=4, code={"a": "1", "b": "2"})

    page = html(operator_client.get("/dashboard/"))

    row = page[page.index("<code>box:101</code>"):]
    row = row[:row.index("</tr>")]
    assert "alive" in row and "<td>gpu</td>" in row and ">4</td>" in row and ">2</td>" in row and "3 s ago" in row
    assert '<div class="value">1 alive</div>' in page


def test_it_shows_a_silent_worker_as_dead(operator_client):
    WorkerHeartbeat.objects.create(name="box:102", last_seen=timezone.now() - datetime.timedelta(minutes=10))

    page = html(operator_client.get("/dashboard/"))

    row = page[page.index("<code>box:102</code>"):]
    assert "dead" in row[:row.index("</tr>")] and "600 s ago" in row[:row.index("</tr>")]
    assert '<div class="value">no worker</div>' in page


def test_it_charts_runs_per_day(operator_client):
    finished("fanout_demo", rows="5")
    Run.objects.update(created_at=timezone.now() - datetime.timedelta(days=3))
    finished("fanout_demo", rows="5")

    page = html(operator_client.get("/dashboard/"))

    day = timezone.localtime() - datetime.timedelta(days=3)
    assert f"<title>{day:%b} {day.day} · fanout_demo: 1 run</title>" in page
    assert "(2 in the last 30 days)" in page


def test_it_refreshes_itself(operator_client):
    response = operator_client.get("/dashboard/", HTTP_HX_REQUEST="true")

    assert response.status_code == 200 and 'hx-trigger="every 10s"' in html(response)
    assert "<html" not in html(response)


def test_it_keeps_the_dashboard_from_stakeholders(stakeholder_client):
    assert stakeholder_client.get("/dashboard/").status_code == 403


# --- stakeholder results -------------------------------------------------------------------------


@pytest.fixture
def mixed_history():
    """Successful, failed and unfinished runs with logs, tracebacks and parameters."""
    good = finished("flaky_demo", fail="false", transient_failures="0")
    bad = finished("flaky_demo")  # fails, with a traceback and an error log line
    finished("fanout_demo", rows="4321", seed="98765")
    engine.start_run("fanout_demo", {"rows": "123457"})
    return good, bad


def test_it_shows_stakeholders_successful_runs_and_their_metrics(stakeholder_client, mixed_history):
    good, bad = mixed_history

    page = html(stakeholder_client.get("/results/flaky_demo/"))

    assert f"<td>#{good.pk}</td>" in page and f"#{bad.pk}<" not in page
    assert '<svg class="chart chart-wide"' in page and "published over the last 1 successful runs" in page


def test_it_never_sends_stakeholders_failures_logs_or_parameters(stakeholder_client, mixed_history):
    # (A step's own page shows its source code, whose strings are code, not run data.)
    for url in ("/results/", "/results/flaky_demo/", "/results/fanout_demo/", "/pipelines/", "/pipelines/flaky_demo/"):
        page = html(stakeholder_client.get(url))
        for secret in (SECRET_TRACEBACK, SECRET_LOG, "records with negative amounts", "4321", "98765", "123457", "failed", "running", "Traceback"):
            assert secret not in page, (url, secret)
        assert "<button" not in page.replace('<button type="submit" class="link">Log out</button>', "")


def test_it_lands_stakeholders_on_results_with_the_right_menu(stakeholder_client):
    page = html(stakeholder_client.get("/results/"))

    assert 'href="/results/"' in page and 'href="/runs/"' not in page and 'href="/dashboard/"' not in page
