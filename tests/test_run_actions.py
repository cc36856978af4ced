"""Operator actions on runs: retry from failure (with its preview), re-run, cancel."""

import datetime

import pytest
from django.urls import reverse

from app import artifacts
from app.models import AuditEvent, Run, Status, StepRun
from app.pipelines.registry import registry
from app.runs import actions, engine, statements, watchdog

pytestmark = pytest.mark.django_db

CALLS = []  # which steps of the diamond actually ran, in order
BROKEN = {"right": True}


@pytest.fixture
def diamond(define):
    """top → left, right → bottom; `right` fails while BROKEN says so."""
    pipe = define("t_diamond")

    @pipe.step()
    def top(ctx):
        CALLS.append("top")
        return 10

    @pipe.step(after=[top])
    def left(ctx, top):
        CALLS.append("left")
        return top + 1

    @pipe.step(after=[top])
    def right(ctx, top):
        CALLS.append("right")
        if BROKEN["right"]:
            raise RuntimeError("right is broken")
        return top * 2

    @pipe.step(after=[left, right])
    def bottom(ctx, left, right):
        CALLS.append("bottom")
        return left + right

    CALLS.clear()
    BROKEN["right"] = True
    yield pipe
    BROKEN["right"] = True


def finished_run(name, **params):
    run, ready = engine.start_run(name, params)
    return engine.run_inline(run, ready)


def steps(run):
    return {sr.step_name: sr for sr in StepRun.objects.filter(run=run)}


def output(step_run):
    return artifacts.load_output(step_run.output_path, step_run.output_inline)


def test_it_plans_to_rerun_the_failed_step_and_everything_below_it(diamond):
    run = finished_run("t_diamond")

    assert actions.retry_plan(run) == (["right", "bottom"], ["top", "left"])


def test_it_retries_from_failure_reusing_the_outputs_that_succeeded(diamond, operator):
    failed = finished_run("t_diamond")
    BROKEN["right"] = False  # the fix
    CALLS.clear()

    retry, ready = actions.retry_from_failure(failed, operator)
    retry = engine.run_inline(retry, ready)

    assert retry.status == Status.SUCCEEDED
    assert CALLS == ["right", "bottom"]  # top and left did not run again
    new, old = steps(retry), steps(failed)
    assert new["top"].reused_from == old["top"] and new["left"].reused_from == old["left"]
    assert (new["left"].output_path, new["left"].output_inline) == (old["left"].output_path, old["left"].output_inline)
    assert (retry.retry_of, retry.attempt, retry.params) == (failed, 2, failed.params)
    assert output(new["bottom"]) == output(steps(finished_run("t_diamond"))["bottom"]) == 31


def test_it_counts_attempts_along_a_chain_of_retries(diamond, operator):
    failed = finished_run("t_diamond")
    second = engine.run_inline(*actions.retry_from_failure(failed, operator))
    BROKEN["right"] = False

    third = engine.run_inline(*actions.retry_from_failure(second, operator))

    assert (second.attempt, third.attempt, third.retry_of, third.status) == (2, 3, failed, Status.SUCCEEDED)
    assert steps(third)["left"].reused_from == steps(failed)["left"]


def test_it_refuses_to_retry_a_run_that_succeeded(operator):
    run = finished_run("fanout_demo", rows="5")

    with pytest.raises(actions.ActionRefused, match="Only a failed or cancelled run can be retried"):
        actions.retry_from_failure(run, operator)
    assert Run.objects.count() == 1


def test_it_refuses_to_retry_when_the_steps_changed(diamond, define, operator):
    failed = finished_run("t_diamond")
    changed = define("t_diamond")  # the same name, now with different steps

    @changed.step()
    def only(ctx):
        return 1

    registry.defined.remove(diamond)  # the new definition replaces the old one
    with pytest.raises(actions.ActionRefused, match="The steps of t_diamond changed"):
        actions.retry_from_failure(failed, operator)


def test_it_reruns_with_the_same_parameters(operator):
    run = finished_run("fanout_demo", rows="7")

    new, ready = actions.rerun(run, operator)

    assert (new.params, new.trigger_source, new.steps_finished, len(ready)) == (run.params, "rerun", 0, 1)


def test_it_cancels_a_queued_run_at_once(operator):
    run, _ready = engine.start_run("fanout_demo", {})

    run = actions.cancel(run, operator)

    assert (run.status, run.cancelled_by, run.steps_finished) == (Status.CANCELLED, operator, 5)
    assert set(StepRun.objects.filter(run=run).values_list("status", flat=True)) == {Status.CANCELLED}


def test_it_never_starts_a_step_of_a_cancelled_run(operator):
    run, ready = engine.start_run("fanout_demo", {})
    actions.cancel(run, operator)

    assert list(engine.execute_step(ready[0])) == []
    assert StepRun.objects.get(pk=ready[0]).attempt == 0


def test_it_lets_a_running_step_finish_and_starts_nothing_after_it(operator):
    run, ready = engine.start_run("fanout_demo", {"rows": "5"})
    claimed = statements.claim(ready[0], run.created_at, "test")  # `load` is running
    actions.cancel(run, operator)

    assert engine.record_success(claimed, "", ("runs/x.pkl", None)) == []
    run.refresh_from_db()
    assert (run.status, run.steps_finished) == (Status.CANCELLED, 5)
    assert steps(run)["load"].status == Status.SUCCEEDED


def test_it_refuses_to_cancel_a_finished_run(operator):
    run = finished_run("fanout_demo", rows="5")

    with pytest.raises(actions.ActionRefused, match="has already finished"):
        actions.cancel(run, operator)


# --- the views --------------------------------------------------------------------------------


def test_it_previews_a_retry_with_the_steps_to_rerun_and_reuse(diamond, operator_client):
    run = finished_run("t_diamond")

    response = operator_client.get(f"/runs/{run.pk}/retry/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "Runs again (2)" in page and "Reused (2)" in page
    assert 'id="step-right" class="node step st-retrying"' in page
    assert 'id="step-left" class="node step st-succeeded"' in page
    assert Run.objects.count() == 1  # a preview changes nothing


def test_it_starts_the_retry_and_records_it(diamond, operator_client, operator):
    run = finished_run("t_diamond")

    response = operator_client.post(f"/runs/{run.pk}/retry/start/")

    new = Run.objects.get(retry_of=run)
    assert response.status_code == 302 and response["Location"] == f"/runs/{new.pk}/"
    event = AuditEvent.objects.get()
    assert (event.user, event.action, event.target_id) == (operator, "retry", str(new.pk))
    assert event.details == {"retry_of": run.pk, "rerun_steps": ["right", "bottom"], "reused_steps": ["top", "left"]}
    # both pages link to each other
    assert f'retry from failure of <a href="/runs/{run.pk}/">' in operator_client.get(f"/runs/{new.pk}/").content.decode()
    assert f'<a href="/runs/{new.pk}/">#{new.pk}</a>' in operator_client.get(f"/runs/{run.pk}/").content.decode()


def test_it_explains_why_a_retry_is_refused(operator_client):
    run = finished_run("fanout_demo", rows="5")

    response = operator_client.post(f"/runs/{run.pk}/retry/start/", follow=True)

    assert "Only a failed or cancelled run can be retried" in response.content.decode()
    assert Run.objects.count() == 1 and not AuditEvent.objects.exists()


def test_it_reruns_from_the_run_page(operator_client, operator):
    run = finished_run("fanout_demo", rows="5")

    response = operator_client.post(f"/runs/{run.pk}/rerun/")

    new = Run.objects.exclude(pk=run.pk).get()
    assert response["Location"] == f"/runs/{new.pk}/"
    assert AuditEvent.objects.get().action == "rerun"


def test_it_cancels_from_the_run_page(operator_client, operator):
    run, _ready = engine.start_run("fanout_demo", {})

    response = operator_client.post(f"/runs/{run.pk}/cancel/", follow=True)

    run.refresh_from_db()
    assert (run.status, run.cancelled_by) == (Status.CANCELLED, operator)
    assert f"Run #{run.pk} is cancelled." in response.content.decode()
    assert AuditEvent.objects.get().action == "cancel"


def test_without_javascript_the_cancel_button_opens_a_confirmation_that_changes_nothing(operator_client):
    run, ready = engine.start_run("fanout_demo", {})
    engine.execute_step(ready[0])  # load succeeded; total, mean and spread are queued, report waits
    run_page = operator_client.get(f"/runs/{run.pk}/").content.decode()
    assert f'<form method="get" action="/runs/{run.pk}/cancel/" hx-post="/runs/{run.pk}/cancel/"' in run_page

    response = operator_client.get(f"/runs/{run.pk}/cancel/")

    assert response.status_code == 200
    page = response.content.decode()
    assert f"Cancel run #{run.pk}?" in page and "4 steps not started yet will not run." in page
    assert f'<form method="post" action="/runs/{run.pk}/cancel/"' in page and "Keep it running" in page
    run.refresh_from_db()
    assert run.status == Status.RUNNING and run.cancel_requested_at is None and not AuditEvent.objects.exists()


def test_the_cancel_confirmation_of_a_finished_run_says_there_is_nothing_to_cancel(operator_client):
    run = finished_run("flaky_demo")

    page = operator_client.get(f"/runs/{run.pk}/cancel/").content.decode()

    assert "has already ended (failed): there is nothing to cancel." in page and "<form method=\"post\"" not in page


def test_it_shows_the_actions_that_apply_to_a_failed_run(operator_client):
    run = finished_run("flaky_demo")

    page = operator_client.get(f"/runs/{run.pk}/").content.decode()

    assert "Retry from failure…" in page and "Re-run with edited parameters" in page
    assert f'href="/pipelines/flaky_demo/?from_run={run.pk}"' in page
    assert "Cancel run" not in page


ACTION_URLS = [
    ("post", "run_cancel"),
    ("post", "run_retry"),
    ("post", "run_rerun"),
    ("get", "run_retry_preview"),
]


@pytest.mark.parametrize("method,name", ACTION_URLS)
def test_it_sends_anonymous_users_to_log_in(client, method, name):
    run = finished_run("flaky_demo")
    url = reverse(name, args=[run.pk])

    response = getattr(client, method)(url)

    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.parametrize("method,name", ACTION_URLS)
def test_it_forbids_stakeholders_and_changes_nothing(stakeholder_client, method, name):
    run = finished_run("flaky_demo")

    response = getattr(stakeholder_client, method)(reverse(name, args=[run.pk]))

    assert response.status_code == 403
    assert Run.objects.count() == 1 and not AuditEvent.objects.exists()


@pytest.mark.parametrize("method,name", [("put", "run_cancel"), ("get", "run_retry"), ("get", "run_rerun"), ("post", "run_retry_preview")])
def test_it_refuses_the_wrong_method(operator_client, method, name):
    run = finished_run("flaky_demo")

    assert getattr(operator_client, method)(reverse(name, args=[run.pk])).status_code == 405


def test_it_stops_a_lost_step_of_a_cancelled_run_instead_of_queueing_it(operator):
    run, ready = engine.start_run("fanout_demo", {})
    statements.claim(ready[0], run.created_at, "gone:1:t")
    actions.cancel(run, operator)
    StepRun.objects.filter(pk=ready[0]).update(heartbeat_at=run.created_at - datetime.timedelta(hours=1))

    assert watchdog.rescue_lost_steps() == []

    run.refresh_from_db()
    assert (run.status, StepRun.objects.get(pk=ready[0]).status) == (Status.CANCELLED, Status.CANCELLED)
