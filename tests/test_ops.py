"""Operable: the health check of load balancers, the worker probe of orchestrators, Prometheus'
metrics, and logs as JSON lines that say which run and step they are about."""

import json
import signal
import sqlite3
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from app.runs import engine
from tests.conftest import ROOT, free_port, on_postgres, process_env, wait_for
from tests.gate import Gate

pytestmark = pytest.mark.django_db


# --- /healthz -----------------------------------------------------------------------------


def test_healthz_answers_without_a_login_and_says_no_more_than_it_must(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "queue": "ok"}}
    assert client.post("/healthz").status_code == 405


@pytest.fixture
def web_server_on(tmp_path):
    """Start gunicorn on a given database URL (each request connects afresh); its base URL."""
    started = []

    def start(database_url):
        port = free_port()
        log_path = tmp_path / f"gunicorn-{len(started)}.log"
        env = process_env(TEST_DATABASE_URL=database_url, DB_CONN_MAX_AGE="0", DB_CONNECT_TIMEOUT="2")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "app.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                 "--no-control-socket"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        started.append(process)
        process.log_path = log_path
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _get(url + "/healthz")[0] in (200, 503), timeout=30, message="gunicorn to answer")
        return url, process

    yield start
    for process in started:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _get(url):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
    except (urllib.error.URLError, ConnectionError):
        return None, None


@pytest.mark.django_db(transaction=True)
def test_healthz_is_503_while_the_database_is_gone_and_200_when_it_is_back(web_server_on, tmp_path):
    if on_postgres():
        db = connection.settings_dict
        gate = Gate(db["HOST"], db["PORT"])
        gate.open()
        url, server = web_server_on(f"postgres://{db['USER']}@127.0.0.1:{gate.port}/{db['NAME']}")
        stop, start = gate.close, gate.open
    else:
        home = tmp_path / "db"
        home.mkdir()
        with sqlite3.connect(connection.settings_dict["NAME"]) as source, sqlite3.connect(home / "db.sqlite3") as copy:
            source.backup(copy)
        url, server = web_server_on(f"sqlite:///{home / 'db.sqlite3'}")

        def stop():  # the database file's directory is gone: it cannot be opened
            home.rename(tmp_path / "away")

        def start():
            (tmp_path / "away").rename(home)

    assert _get(url + "/healthz") == (200, {"status": "ok", "checks": {"database": "ok", "queue": "ok"}})
    stop()
    status, body = _get(url + "/healthz")
    assert (status, body) == (503, {"status": "unavailable", "checks": {"database": "failing", "queue": "ok"}})
    start()
    assert _get(url + "/healthz")[0] == 200
    assert "the database does not answer" in server.log_path.read_text()  # why, for the operator: in the log


# --- the worker probe ---------------------------------------------------------------------


def probe(*args):
    out, err = StringIO(), StringIO()
    try:
        call_command("worker_health", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit:
        code = exit.code
    return code, out.getvalue() + err.getvalue()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_probe_follows_the_workers_own_sign_of_life(start_worker, settings):
    settings.WORKER_BEAT_SECONDS = 1  # a worker is dead after 3 beats + 5 s
    assert probe()[0] == 1
    worker = start_worker(WORKER_BEAT_SECONDS="1")

    code, said = wait_for(lambda: (lambda r: r if r[0] == 0 else None)(probe()), timeout=60,
                          message="the worker's first sign of life")
    assert said.startswith("healthy: 1 worker(s)")
    assert probe("--pid", str(worker.pid))[0] == 0
    assert probe("--pid", "1")[0] == 1

    worker.send_signal(signal.SIGKILL)
    worker.wait()
    code, said = wait_for(lambda: (lambda r: r if r[0] == 1 else None)(probe()), timeout=30,
                          message="the probe to notice the dead worker")
    assert said.startswith("unhealthy: no worker on this machine has written its sign of life in the last 8 s")


# --- /metrics -----------------------------------------------------------------------------


def scrape(client, token="metrics-secret"):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_metrics_are_refused_without_their_token(client, operator, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404  # off until a token is set
    settings.METRICS_TOKEN = "metrics-secret"
    client.force_login(operator)  # a session is not a token

    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": "metrics-secret"}):
        response = client.get("/metrics", **headers)
        assert response.status_code == 401 and b"METRICS_TOKEN" in response.content


def test_the_counters_move_when_a_run_happens(client, settings):
    settings.METRICS_TOKEN = "metrics-secret"
    before = scrape(client)

    engine.run_inline(*engine.start_run("fanout_demo", {"rows": "5"}))
    engine.run_inline(*engine.start_run("flaky_demo", {"fail": "true"}))
    after = scrape(client)

    def moved(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert moved("mlops_runs", pipeline="fanout_demo", status="succeeded") == 1
    assert moved("mlops_runs", pipeline="flaky_demo", status="failed") == 1
    assert moved("mlops_step_runs", status="succeeded") >= 5
    assert moved("mlops_step_runs", status="failed") == 1
    assert moved("mlops_step_duration_seconds_count") == moved("mlops_step_runs", status="succeeded") + 1
    assert moved("mlops_step_duration_seconds_bucket", le="+Inf") == moved("mlops_step_duration_seconds_count")
    assert after[("mlops_queue_depth", (("queue", "default"),))] >= 0
    assert ("mlops_steps_rescued_total", ()) in after


# --- JSON logs ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_log_lines_are_json_with_the_run_and_step_when_asked(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "run_pipeline", "fanout_demo", "--sync", "--param", "rows=7"],
        cwd=ROOT, env=process_env(LOG_FORMAT="json", LOG_LEVEL="INFO"), capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 0, result.stderr
    # (the command's own last line, "run #… succeeded", is its output, not a log line)
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    assert lines[0]["time"].endswith("+00:00") and "T" in lines[0]["time"]
    generated = [line for line in lines if line["message"] == "generated 7 rows"]
    assert len(generated) == 1
    assert generated[0]["step"] == "load" and generated[0]["run_id"] > 0 and generated[0]["step_run_id"] > 0
    assert generated[0]["logger"] == "pipelines.fanout_demo.load"


def test_an_unknown_log_format_is_refused_with_a_clear_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=process_env(LOG_FORMAT="xml"),
        capture_output=True, text=True, timeout=120,
    )

    assert result.returncode != 0
    assert "LOG_FORMAT='xml' is not one of: plain, json" in result.stderr
