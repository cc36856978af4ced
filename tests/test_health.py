"""Health per version: the model page's Health card (requests, p50 / p95 latency, 4xx and 5xx
rates per version and role over an hour, a day or a week, deploys marked on the time axis),
the live models on the operator home, and the rollup of the prediction log into minutes,
which counts a late row once and never twice.

Predictions go through the real endpoint (the test client writes the log at once); older
traffic is inserted as Prediction rows with past times, as the log's writer would have."""

import datetime
import json
import re
import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from app.api import tokens
from app.mlmodels import deployments, health, monitoring, serving, trials
from app.models import Prediction, PredictionMinute, RegisteredModel, Role
from tests.conftest import train_version

pytestmark = pytest.mark.django_db

PAGE = "/models/demo/"
GOOD = {"instances": [[1, 2], [3.5, -4]]}
BAD = {"instances": [[1, 2, 3]]}  # three features where the model takes two: a 400


@pytest.fixture(autouse=True)
def fresh_models():
    """Ids (and so file paths) are given again after a rolled-back test: forget the models
    this process loaded for an earlier test."""
    serving._held.clear()
    yield
    serving.shadow.wait_idle()
    serving._held.clear()


@pytest.fixture
def live(model_demo, operator):
    version = train_version(constant=3)
    deployments.deploy(version, operator, "first")
    return version


def predict(secret, body):
    data = json.dumps(body)
    return Client().post("/api/models/demo/predict", data=data, content_type="application/json",
                         HTTP_AUTHORIZATION=f"Bearer {secret}")


def traffic(secret, good, bad):
    for _ in range(good):
        assert predict(secret, GOOD).status_code == 200
    for _ in range(bad):
        assert predict(secret, BAD).status_code == 400


def log_rows(version, minutes_ago, n=1, status=200, latency=5.0, role=Role.LIVE, now=None):
    """n rows of the prediction log, `minutes_ago` minutes before now, as the writer makes them."""
    at = (now or timezone.now()) - datetime.timedelta(minutes=minutes_ago)
    Prediction.objects.bulk_create([
        Prediction(uid=uuid.uuid4(), model=version.model, version=version, role=role, at=at, latency_ms=latency,
                   status=status, n_instances=1)
        for _ in range(n)
    ])


def text(response) -> str:
    return response.content.decode()


def tile(page_text, label) -> str:
    """The value of the Health card's tile whose label starts with `label`."""
    found = re.search(r'<div class="value">([^<]*)</div><div class="label">' + re.escape(label), page_text)
    assert found, f"no tile {label!r}"
    return found.group(1).strip()


# --- the model page ------------------------------------------------------------------------


def test_it_shows_requests_errors_and_the_deploy_on_the_model_page(live, operator, operator_client):
    secret = tokens.create(operator, "tests")[1]
    traffic(secret, good=8, bad=2)
    response = operator_client.get(PAGE)
    assert response.status_code == 200
    page = text(response)
    assert tile(page, "requests answered") == "10"
    assert tile(page, "error rate") == "20.0 %"
    assert "error rate: 2 client (4xx), 0 server (5xx)" in page
    assert page.count('<svg class="chart chart-wide"') >= 3  # requests, latency, errors
    assert ">v1 deployed</text>" in page  # the deploy's label on the time axis
    assert "Marked on the charts:</strong> (1) v1 deployed at" in page
    assert "v1 live 4xx" in page and "v1 live p95" in page  # the legends


def test_it_counts_the_same_before_and_after_the_rollup(live):
    for minutes_ago, status in ((30, 200), (30, 500), (20, 200), (3, 400), (0, 200)):
        log_rows(live, minutes_ago, n=3, status=status)
    model = RegisteredModel.objects.get(name="demo")
    before = health.page(model, "hour")["totals"]
    assert health.rollup() > 0
    after = health.page(model, "hour")["totals"]
    for moving in ("per_minute", "per_hour"):  # the page's are a moment apart
        before.pop(moving), after.pop(moving)
    assert before == after
    assert after["requests"] == 15 and after["errors_4xx"] == 3 and after["errors_5xx"] == 3


def test_it_splits_versions_and_roles_and_marks_the_trial(live, operator, operator_client):
    candidate = train_version(constant=8)
    trials.start(live.model, candidate.version, "shadow", None, operator, "try v2")
    log_rows(live, 10, n=4)
    log_rows(candidate, 10, n=4, status=500, role=Role.SHADOW, latency=50.0)
    page = text(operator_client.get(PAGE))
    table = page[page.index('id="health-series"'):page.index("</table>", page.index('id="health-series"'))]
    assert "v1 <span" in table and ">live<" in table and "v2 <span" in table and ">shadow<" in table
    # The tiles count what clients got back: a shadow's failures are not theirs.
    assert tile(page, "requests answered") == "4"
    assert tile(page, "error rate") == "0.0 %"
    assert ">v2 shadow started</text>" in page


def test_it_marks_where_a_trial_started_and_was_aborted(live, operator, operator_client):
    candidate = train_version(constant=8)
    trials.start(live.model, candidate.version, "canary", 20, operator, "try v2")
    trials.abort(live.model, operator, "not better")
    log_rows(live, 1, n=3)
    page = text(operator_client.get(PAGE))
    # Three marks in the same minute: numbered on the chart, named in its <title> and the list.
    assert "<title>2 · v2 canary 20 % started · " in page and "<title>3 · v2 canary 20 % aborted · " in page
    assert "(2) v2 canary 20 % started at" in page and "(3) v2 canary 20 % aborted at" in page


def test_it_switches_between_hour_day_and_week(live, operator_client):
    log_rows(live, 3 * 60, n=5)  # three hours ago: in the day, not in the hour
    log_rows(live, 3 * 24 * 60, n=7)  # three days ago: in the week only
    hour = text(operator_client.get(PAGE))
    assert 'id="health-empty"' in hour and "No prediction requests in the last hour" in hour
    day = text(operator_client.get(PAGE + "?span=day"))
    assert tile(day, "requests answered") == "5"
    assert '<a class="button primary" href="?span=day#health" aria-current="page"' in day
    week = text(operator_client.get(PAGE + "?span=week"))
    assert tile(week, "requests answered") == "12"


def test_a_bad_span_is_the_last_hour(live, operator_client):
    log_rows(live, 5, n=2)
    response = operator_client.get(PAGE + "?span=<year>")
    assert response.status_code == 200
    page = text(response)
    assert tile(page, "requests answered") == "2"
    assert "Health <small class=\"muted\">· last hour</small>" in page
    assert "&lt;year&gt;" not in page  # the bad value is not echoed back


def test_the_span_links_keep_the_versions_table_sorting(live, operator_client):
    page = text(operator_client.get(PAGE + "?sort=accuracy&order=asc"))
    assert 'href="?sort=accuracy&amp;order=asc&amp;span=week#health"' in page


def test_it_says_plainly_when_there_is_no_traffic_yet(live, operator_client):
    page = text(operator_client.get(PAGE))
    assert "No prediction requests yet: this model has had no traffic." in page
    assert '<svg class="chart' not in page[page.index('id="health"'):page.index("</section>", page.index('id="health"'))]


def test_the_model_page_stays_closed_to_stakeholders(live, stakeholder_client):
    assert stakeholder_client.get(PAGE + "?span=day").status_code == 403


def test_the_health_card_costs_the_same_few_queries_whatever_the_traffic(live):
    model = RegisteredModel.objects.select_related("live").get(name="demo")  # as the page has it
    log_rows(live, 10)
    health.rollup()
    with CaptureQueriesContext(connection) as small:
        health.page(model, "week")
    for minutes_ago in range(0, 7 * 24 * 60, 37):
        log_rows(live, minutes_ago, n=3)
    health.rollup()
    with CaptureQueriesContext(connection) as big:
        health.page(model, "week")
    # The rollup's rows of the week and one grouped query over the raw tail: no query per minute.
    assert len(big) == len(small) <= 8


# --- percentiles ---------------------------------------------------------------------------


def test_percentiles_are_within_a_bucket_of_the_exact_value(live):
    latencies = [1.0 + i * 0.5 for i in range(200)]  # 1 .. 100.5 ms
    now = timezone.now()
    Prediction.objects.bulk_create([
        Prediction(uid=uuid.uuid4(), model=live.model, version=live, at=now - datetime.timedelta(minutes=5),
                   latency_ms=ms, status=200) for ms in latencies])
    totals = health.page(live.model, "hour")["totals"]
    assert totals["p50"] == pytest.approx(50.75, rel=0.42)
    assert totals["p95"] == pytest.approx(95.75, rel=0.42)
    assert totals["p50"] < totals["p95"]


# --- the rollup ----------------------------------------------------------------------------


def rolled_totals():
    rows = PredictionMinute.objects.all()
    return (sum(r.requests for r in rows), sum(r.errors_4xx for r in rows), sum(r.errors_5xx for r in rows),
            sum(sum(r.latency_bins) for r in rows))


def raw_totals():
    rows = Prediction.objects.filter(version__isnull=False)
    return (rows.count(), rows.filter(status__gte=400, status__lt=500).count(), rows.filter(status__gte=500).count(),
            rows.count())


def test_the_rollup_counts_late_rows_once_and_never_twice(live):
    now = timezone.now().replace(second=30)
    for minutes_ago in range(40, 0, -1):
        log_rows(live, minutes_ago, n=2, status=500 if minutes_ago % 10 == 0 else 200, now=now)
    health.rollup(now=now)
    assert rolled_totals() == raw_totals()
    # Rows that arrive late, for minutes already rolled (a web process's batch held back).
    log_rows(live, 5, n=4, status=404, now=now)
    log_rows(live, 12, n=1, now=now)
    later = now + datetime.timedelta(minutes=1)
    health.rollup(now=later)
    health.rollup(now=later)  # twice: nothing counted again
    monitoring.tick(now=later)  # the worker's job, a third time
    assert rolled_totals() == raw_totals() == (85, 4, 8, 85)
    minute = (now - datetime.timedelta(minutes=5)).replace(second=0, microsecond=0)
    assert PredictionMinute.objects.get(minute=minute, version=live, role=Role.LIVE).requests == 6


def test_a_row_later_than_the_reroll_window_stays_out_of_the_rollup(live):
    now = timezone.now().replace(second=30)
    log_rows(live, 60, n=1, now=now)
    log_rows(live, 1, n=1, now=now)
    health.rollup(now=now)
    log_rows(live, 30, n=1, now=now)  # half an hour late: past REROLL_MINUTES
    health.rollup(now=now + datetime.timedelta(minutes=1))
    assert rolled_totals()[0] == 2
    assert Prediction.objects.count() == 3  # still in the log


def test_the_page_shows_a_request_made_a_second_ago_after_a_rollup(live, operator):
    log_rows(live, 20, n=2)
    health.rollup()
    secret = tokens.create(operator, "tests")[1]
    traffic(secret, good=1, bad=0)
    assert health.page(live.model, None)["totals"]["requests"] == 3


# --- the operator home ---------------------------------------------------------------------


def test_home_lists_each_live_model_with_its_last_hour(live, operator, operator_client):
    secret = tokens.create(operator, "tests")[1]
    traffic(secret, good=6, bad=1)
    log_rows(live, 2 * 60, n=50)  # two hours ago: not in the last hour
    response = operator_client.get("/dashboard/")
    assert response.status_code == 200
    page = text(response)
    section = page[page.index('id="live-models"'):page.index("</section>", page.index('id="live-models"'))]
    assert 'href="/models/demo/#health"' in section and "v1 live" in section
    assert '<td class="num">7</td>' in section
    assert "14.3 %" in section
    assert '<svg class="sparkline"' in section


def test_home_has_no_live_models_section_when_nothing_is_deployed(model_demo, operator_client):
    train_version(constant=3)
    assert 'id="live-models"' not in text(operator_client.get("/dashboard/"))
