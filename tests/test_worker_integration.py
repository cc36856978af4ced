"""End to end through a real `run_huey` worker process: trigger from the web, poll the DB."""

import pytest

from app import artifacts
from app.models import Run, Status
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def finished_run(pk):
    run = Run.objects.get(pk=pk)
    return run if run.is_finished else None


def test_it_runs_the_fanout_example_on_the_worker(worker, operator_client):
    response = operator_client.post("/pipelines/fanout_demo/run/", {"rows": "200", "seed": "3", "pause": "0.5"})

    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    run = wait_for(lambda: finished_run(run.pk), timeout=60, message="the run to finish")
    assert run.status == Status.SUCCEEDED
    assert run.steps_finished == run.steps_total == 5
    steps = {sr.step_name: sr for sr in run.step_runs.all()}
    assert {sr.status for sr in steps.values()} == {Status.SUCCEEDED}
    # fan-out: the three independent branches ran at the same time on the worker's threads
    branches = [steps[s] for s in ("total", "mean", "spread")]
    assert max(sr.started_at for sr in branches) < min(sr.finished_at for sr in branches)
    # fan-in: report waited for all three branches and received their outputs
    assert steps["report"].started_at >= max(steps[s].finished_at for s in ("total", "mean", "spread"))
    report = artifacts.load_output(steps["report"].output_path)
    rows = artifacts.load_output(steps["load"].output_path)
    assert len(rows) == 200 and report["total"] == sum(rows)
    # the steps ran in the worker process, not in the web process
    assert all(sr.worker and sr.worker.split(":")[1] == str(worker.pid) for sr in steps.values())
    assert "generated 200 rows" in steps["load"].log


def test_it_records_a_failure_and_skips_what_depends_on_it(worker, operator_client):
    operator_client.post("/pipelines/flaky_demo/run/", {"fail": "true"})

    run = wait_for(lambda: finished_run(Run.objects.get().pk), timeout=60, message="the run to finish")
    steps = {sr.step_name: sr for sr in run.step_runs.all()}
    assert run.status == Status.FAILED
    assert steps["validate"].status == Status.FAILED
    assert "ValueError: 1 record(s) have a negative amount" in steps["validate"].traceback
    assert steps["publish"].status == Status.UPSTREAM_FAILED
    assert steps["archive"].status == Status.SUCCEEDED
    page = operator_client.get(f"/runs/{run.pk}/")
    assert b"1 record(s) have a negative amount" in page.content
