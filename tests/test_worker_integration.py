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
    report = artifacts.load_output(steps["report"].output_path, steps["report"].output_inline)
    rows = artifacts.load_output(steps["load"].output_path, steps["load"].output_inline)
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


def test_it_retries_a_step_on_the_worker_until_it_works(worker, operator_client):
    operator_client.post("/pipelines/flaky_demo/run/", {"fail": "false", "transient_failures": "2"})

    run = wait_for(lambda: finished_run(Run.objects.get().pk), timeout=60, message="the run to finish")
    extract = run.step_runs.get(step_name="extract")
    assert (run.status, extract.status, extract.attempt) == (Status.SUCCEEDED, Status.SUCCEEDED, 3)
    attempts = list(extract.attempts.all())
    assert [a.error for a in attempts] == [
        "ConnectionError: the source did not answer (attempt 1)",
        "ConnectionError: the source did not answer (attempt 2)",
    ]
    # 0.5 s before the first retry, 1 s (backoff 2) before the second
    assert (attempts[1].started_at - attempts[0].finished_at).total_seconds() >= 0.5
    assert (extract.started_at - attempts[1].finished_at).total_seconds() >= 1.0
    page = operator_client.get(f"/runs/{run.pk}/steps/extract/").content.decode()
    assert "Earlier attempts" in page and "the source did not answer (attempt 2)" in page


def test_it_cancels_a_running_run_on_the_worker(worker, operator_client, operator):
    operator_client.post("/pipelines/fanout_demo/run/", {"rows": "100", "pause": "60"})
    run = Run.objects.get()
    wait_for(lambda: run.step_runs.filter(status=Status.RUNNING).count() == 3, message="the summaries to run")

    operator_client.post(f"/runs/{run.pk}/cancel/")

    run = wait_for(lambda: finished_run(run.pk), timeout=20, message="the cancelled run to finish")
    statuses = dict(run.step_runs.values_list("step_name", "status"))
    assert (run.status, run.cancelled_by) == (Status.CANCELLED, operator)
    assert statuses == {
        "load": Status.SUCCEEDED,
        "total": Status.CANCELLED,
        "mean": Status.CANCELLED,
        "spread": Status.CANCELLED,
        "report": Status.CANCELLED,
    }
    assert run.step_runs.get(step_name="report").attempt == 0  # never started


def test_it_runs_the_segment_report_example_and_reuses_its_cached_customers(worker, operator_client):
    """The pipeline API's tour on the worker: a DataFrame saved as Parquet and cached, a map
    over a runtime list, inferred edges and a condition."""
    form = {"customers": "3000", "seed": "5", "min_customers": "100", "alert_churn": "1"}
    operator_client.post("/pipelines/segment_report/run/", form)
    first = wait_for(lambda: finished_run(Run.objects.get().pk), timeout=90, message="the first run to finish")
    operator_client.post("/pipelines/segment_report/run/", {**form, "alert_churn": "0"})
    second = wait_for(lambda: finished_run(Run.objects.exclude(pk=first.pk).get().pk), timeout=90,
                      message="the second run to finish")

    assert (first.status, second.status) == (Status.SUCCEEDED, Status.SUCCEEDED)
    steps = {sr.step_name: sr for sr in first.step_runs.filter(map_of__isnull=True)}
    assert steps["customers"].output_path.endswith(".parquet")
    assert steps["score"].items_total == steps["score"].items_done >= 4
    assert steps["churn_alert"].status == Status.SKIPPED  # nothing churns above 100 %
    report = artifacts.load_output(steps["report"].output_path, steps["report"].output_inline)
    assert sum(row["customers"] for row in report) <= 3000
    again = {sr.step_name: sr for sr in second.step_runs.filter(map_of__isnull=True)}
    assert again["customers"].reused_from_id == steps["customers"].pk  # the same seed and size: cached
    assert again["churn_alert"].status == Status.SUCCEEDED
    assert list(second.tags.values_list("name", flat=True)) == ["churn-alert"]
