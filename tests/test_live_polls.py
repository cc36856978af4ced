"""Polls answer only what changed since the version the page holds (app/web/live.py):
204 when nothing did, the changed steps' rows and DAG statuses out of band, the whole part
when the version cannot be read or the run finished."""

import json
import re

import pytest

from app.models import Run
from app.runs import engine
from app.web import live

pytestmark = pytest.mark.django_db


def text(response):
    return response.content.decode()


def version_of(response) -> str:
    return re.search(r'id="(?:run|runs)-live" data-version="([^"]+)"', text(response))[1]


def poll(client, url, version):
    return client.get(url, headers={"HX-Request": "true", "X-Poll": "1", "X-Version": version})


def test_a_run_page_poll_answers_204_while_nothing_changed(operator_client):
    run, _ready = engine.start_run("fanout_demo", {"rows": "10"})
    version = version_of(operator_client.get(f"/runs/{run.pk}/"))

    response = poll(operator_client, f"/runs/{run.pk}/", version)

    assert response.status_code == 204
    assert response.content == b""
    assert response[live.HEADER] == version


def test_a_poll_sends_only_the_steps_that_changed_and_not_the_dag(operator_client):
    run, ready = engine.start_run("fanout_demo", {"rows": "10"})
    version = version_of(operator_client.get(f"/runs/{run.pk}/"))
    engine.execute_step(ready[0])  # load succeeds; total, mean and spread are queued after it

    response = poll(operator_client, f"/runs/{run.pk}/", version)

    assert response.status_code == 200
    assert response["HX-Reswap"] == "none"
    page = text(response)
    for changed in ("load", "total", "mean", "spread"):
        assert f'<tr id="step-row-{changed}" hx-swap-oob="true">' in page
    assert "step-row-report" not in page  # still waiting: not sent again
    assert "<svg" not in page
    assert '<span class="label">1/5 · 20%</span>' in page
    update = json.loads(re.search(r'id="dag-update" hidden hx-swap-oob="true" data-steps="([^"]*)"', page)[1]
                        .replace("&quot;", '"'))
    assert update["load"] == ["succeeded", "✓ succeeded"]
    assert update["total"] == ["queued", "… queued"]
    assert set(update) == {"load", "total", "mean", "spread"}
    new_version = response[live.HEADER]
    assert new_version != version
    assert poll(operator_client, f"/runs/{run.pk}/", new_version).status_code == 204


def test_a_poll_with_an_unreadable_version_gets_the_whole_live_part(operator_client):
    run, _ready = engine.start_run("fanout_demo", {"rows": "10"})

    for version in ("garbage", "Lx-y~s1*zz", "Labc-def~s1*999999999"):
        response = poll(operator_client, f"/runs/{run.pk}/", version)

        assert response.status_code == 200
        assert text(response).lstrip().startswith('<div id="run-live"')
        assert "<svg" in text(response)


def test_the_last_poll_sends_the_whole_finished_page_and_stops_polling(operator_client):
    run, ready = engine.start_run("flaky_demo")
    version = version_of(operator_client.get(f"/runs/{run.pk}/"))
    engine.run_inline(run, ready)

    response = poll(operator_client, f"/runs/{run.pk}/", version)

    assert response.status_code == 286
    page = text(response)
    assert '<div id="run-live"' in page and "hx-trigger" not in page
    assert 'id="run-logs" hx-swap-oob="true"' in page


def test_a_poll_of_a_thousand_step_run_sends_a_few_kilobytes_when_one_step_changed(operator_client, define):
    pipe = define("t_wide")
    for i in range(1000):
        def step(ctx):
            return None
        step.__name__ = step.__qualname__ = f"s{i:04d}"
        pipe.step()(step)
    run, ready = engine.start_run("t_wide")
    full = operator_client.get(f"/runs/{run.pk}/")
    version = version_of(full)
    engine.execute_step(ready[0])

    response = poll(operator_client, f"/runs/{run.pk}/", version)

    assert response.status_code == 200
    page = text(response)
    assert page.count("<tr id=") == 1 and 'id="step-row-s0000"' in page
    assert '<span class="label">1/1000 · 0%</span>' in page
    print(f"\n1,000-step run: page {len(full.content):,} bytes, poll after one step {len(response.content):,} bytes")
    assert len(response.content) <= 5_000


def test_the_run_list_answers_204_until_a_run_appears_or_changes(operator_client):
    engine.run_inline(*engine.start_run("flaky_demo"))
    full = operator_client.get("/runs/")
    version = version_of(full)
    assert 'hx-trigger="every 10s"' in text(full)  # nothing runs: a slow poll

    assert poll(operator_client, "/runs/", version).status_code == 204

    started, _ready = engine.start_run("fanout_demo", {"rows": "10"})
    response = poll(operator_client, "/runs/", version)

    assert response.status_code == 200
    assert f'<a href="/runs/{started.pk}/">#{started.pk}</a>' in text(response)
    assert 'hx-trigger="every 2s"' in text(response)  # a run is unfinished: a quick poll
    Run.objects.filter(pk=started.pk).update(status="cancelled")
    assert poll(operator_client, "/runs/", version_of(response)).status_code == 200


def test_versions_are_read_back_exactly_and_garbage_is_not():
    codes = ["s1"] * 998 + ["r2", "q0"]

    assert live.encode(codes) == "s1*998.r2.q0"
    assert live.decode(live.encode(codes)) == codes
    assert live.decode("") == []
    for garbage in ("s", "s1*", "s1*1", "s1*-3", "1s", "s1*99999999", "s1.<b>", "s1*2*3"):
        assert live.decode(garbage) is None, garbage


def test_a_running_steps_page_answers_204_until_its_log_grows(operator_client):
    from app import artifacts

    run, ready = engine.start_run("fanout_demo", {"rows": "10"})
    step = run.step_runs.get(step_name="load")
    step.status, step.attempt = "running", 1
    step.started_at = run.created_at
    step.save()
    log = artifacts.open_log(artifacts.log_path(run.pk, "load", 1))  # as the worker writes it
    log.append(b"reading rows\n")
    url = f"/runs/{run.pk}/steps/load/"
    version = re.search(r'id="step-live" data-version="([^"]+)"', text(operator_client.get(url)))[1]

    assert poll(operator_client, url, version).status_code == 204

    log.append(b"5 rows read\n")
    response = poll(operator_client, url, version)

    assert response.status_code == 200
    assert "5 rows read" in text(response)
    log.close()
