"""Marking a step's outcome by hand: a failed, upstream-failed or stuck step marked succeeded
(what depends on it runs, receiving None for its output) or failed (what depends on it is
skipped), with a reason, through the engine's conditional updates and the audit trail."""

import datetime
import signal

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from app import artifacts
from app.models import AuditEvent, Run, Status, StepRun
from app.pipelines.registry import registry
from app.runs import actions, engine, statements, tasks
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("remove_run_files")]

MARKS = "tests.fixtures.mark_pipelines"
FAST_HEARTBEAT = {"STEP_HEARTBEAT_SECONDS": "0.2", "STEP_LOST_AFTER_SECONDS": "1.5"}


@pytest.fixture
def marks():
    """This process has the pipelines of tests/fixtures/mark_pipelines loaded."""
    registry.discover(MARKS)
    try:
        yield
    finally:
        registry.discover(settings.PIPELINES_PACKAGE)


@pytest.fixture
def mark_workers(marks, start_worker):
    def start(**env):
        return start_worker(PIPELINES_PACKAGE=MARKS, **env)

    return start


def failed_run(name="t_mark", **params):
    return engine.run_inline(*engine.start_run(name, params))


def steps(run):
    return {sr.step_name: sr for sr in StepRun.objects.filter(run_id=run.pk)}


def snapshot(run):
    """What a refused mark must leave alone."""
    return (
        list(Run.objects.filter(pk=run.pk).values_list("status", "steps_finished", "finished_at")),
        list(StepRun.objects.filter(run_id=run.pk).order_by("pk").values_list(
            "status", "upstream_left", "finished_at", "marked_at", "marked_reason")),
        AuditEvent.objects.count(),
    )


def mark_url(step_run):
    return reverse("step_mark", args=[step_run.run_id, step_run.step_name])


def post_mark(client, step_run, outcome="succeeded", reason="checked the data by hand", **fields):
    data = {"outcome": outcome, "status": step_run.status, "attempt": step_run.attempt, "reason": reason, **fields}
    return client.post(mark_url(step_run), data)


def output(step_run):
    return artifacts.load_output(step_run.output_path, step_run.output_inline)


# --- the confirmation page --------------------------------------------------------------------


def test_it_says_what_marking_a_failed_step_succeeded_will_do(marks, operator_client):
    run = failed_run()
    before = snapshot(run)

    response = operator_client.get(mark_url(steps(run)["check"]))

    page = response.content.decode()
    assert response.status_code == 200
    assert "Mark step <code>check</code> succeeded?" in page
    assert "The output of <code>check</code> does not exist: its dependants receive <code>None</code>" in page
    assert "These steps will run: <code>publish</code> (at once)." in page
    assert "had finished failed: it is re-opened and continues" in page
    assert 'name="reason"' in page and 'name="status" value="failed"' in page
    assert snapshot(run) == before  # the page changes nothing


def test_it_offers_the_marks_on_the_step_page_of_a_failed_step_only(marks, operator_client):
    run = failed_run()

    failed = operator_client.get(reverse("run_step", args=[run.pk, "check"])).content.decode()
    succeeded = operator_client.get(reverse("run_step", args=[run.pk, "source"])).content.decode()

    assert f'href="/runs/{run.pk}/steps/check/mark/?outcome=succeeded"' in failed
    assert "Mark failed…" not in failed  # it has failed already
    assert "/mark/" not in succeeded


def test_it_names_the_steps_that_stay_blocked_by_another_failure(define, operator_client):
    pipe = define("t_two_failures")

    @pipe.step()
    def left(ctx):
        raise RuntimeError("left broke")

    @pipe.step()
    def right(ctx):
        raise RuntimeError("right broke")

    @pipe.step(after=[left, right])
    def join(ctx, left, right):
        return [left, right]

    run = failed_run("t_two_failures")

    page = operator_client.get(mark_url(steps(run)["left"])).content.decode()

    assert "These stay upstream failed, because <code>right</code> above them failed too: <code>join</code>." in page
    assert "The run stays failed." in page


# --- marking ------------------------------------------------------------------------------------


def test_it_marks_a_failed_step_succeeded_and_re_opens_the_run(marks, operator_client, operator):
    run = failed_run()
    check = steps(run)["check"]

    response = post_mark(operator_client, check, reason="the source was fixed upstream")

    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/steps/check/"
    run.refresh_from_db()
    now = steps(run)
    assert (run.status, run.steps_finished, run.steps_total, run.finished_at) == (Status.RUNNING, 3, 4, None)
    assert (now["check"].status, now["check"].marked_by, now["check"].marked_reason) == (
        Status.SUCCEEDED, operator, "the source was fixed upstream")
    assert (now["publish"].status, now["publish"].upstream_left, now["publish"].finished_at) == (Status.QUEUED, 0, None)
    event = AuditEvent.objects.get()
    assert (event.user, event.action, event.target_id, event.pipeline_name) == (operator, "step_mark", str(check.pk), "t_mark")
    assert event.details == {
        "outcome": "succeeded", "reason": "the source was fixed upstream", "was": "failed", "attempt": 1,
        "steps_that_run": ["publish"], "run_status_after": "running",
    }

    run = engine.run_inline(run, [now["publish"].pk])  # what the worker does once it is queued

    assert (run.status, run.steps_finished) == (Status.SUCCEEDED, 4)
    assert run.finished_at is not None
    assert output(steps(run)["publish"]) == {"received": None}
    page = operator_client.get(reverse("run_step", args=[run.pk, "check"])).content.decode()
    assert "Marked succeeded by olivia: the source was fixed upstream" in page
    run_page = operator_client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "✎ marked succeeded by olivia: the source was fixed upstream" in run_page


def test_it_marks_a_queued_step_failed_and_skips_what_waits_for_it(marks, operator_client):
    run, _ready = engine.start_run("t_mark", {})  # no worker: `source` stays queued
    source = steps(run)["source"]

    response = post_mark(operator_client, source, outcome="failed", reason="its data will not come today")

    assert response.status_code == 302
    run.refresh_from_db()
    now = steps(run)
    assert (run.status, run.steps_finished) == (Status.FAILED, 4)
    assert run.finished_at is not None
    assert now["source"].status == Status.FAILED
    assert now["source"].error == "marked failed by hand by olivia: its data will not come today"
    assert {now[name].status for name in ("check", "publish", "archive")} == {Status.UPSTREAM_FAILED}
    assert AuditEvent.objects.get().details["steps_skipped"] == ["check", "publish", "archive"]


def test_it_refuses_an_empty_reason_and_changes_nothing(marks, operator_client):
    run = failed_run()
    before = snapshot(run)

    response = post_mark(operator_client, steps(run)["check"], reason="   ")

    assert response.status_code == 422
    assert "Give a reason: it is kept in the audit trail, with your name." in response.content.decode()
    assert snapshot(run) == before


def test_it_refuses_a_step_that_changed_meanwhile_and_changes_nothing(marks, operator_client):
    run, ready = engine.start_run("t_mark", {})
    source = steps(run)["source"]  # the page showed it queued
    statements.claim(ready[0], timezone.now(), "elsewhere:1:t")  # a worker took it since
    before = snapshot(run)

    response = post_mark(operator_client, source, outcome="failed")

    page = response.content.decode()
    assert response.status_code == 409
    assert "Step source changed meanwhile: the page showed it queued, and it is running (attempt 1) now." in page
    assert "Nothing was changed" in page
    assert snapshot(run) == before


def test_it_refuses_to_mark_a_step_that_succeeded(marks, operator_client):
    run = failed_run()
    before = snapshot(run)

    response = post_mark(operator_client, steps(run)["source"])

    assert response.status_code == 409
    assert "only a failed, upstream-failed or stuck" in response.content.decode()
    assert snapshot(run) == before


def test_it_refuses_a_running_step_whose_worker_is_alive(marks, operator):
    _run, ready = engine.start_run("t_mark", {})
    source = statements.claim(ready[0], timezone.now(), "here:1:t")

    with pytest.raises(actions.ActionRefused, match="marked it alive less than"):
        actions.mark_step(StepRun.objects.get(pk=source.pk), "failed", "why", operator, expected=("running", 1))


def test_a_step_marked_succeeded_among_other_failures_leaves_the_run_failed(define, operator):
    pipe = define("t_two_failures")

    @pipe.step()
    def left(ctx):
        raise RuntimeError("left broke")

    @pipe.step()
    def right(ctx):
        raise RuntimeError("right broke")

    @pipe.step(after=[left, right])
    def join(ctx, left, right):
        return [left, right]

    run = failed_run("t_two_failures")
    finished_at = run.finished_at

    plan, ready = actions.mark_step(steps(run)["left"], "succeeded", "ok", operator, expected=("failed", 1))

    run.refresh_from_db()
    assert (plan.stay_blocked, plan.blocked_by, ready) == (["join"], ["right"], [])
    assert (run.status, run.steps_finished) == (Status.FAILED, 3)
    assert run.finished_at >= finished_at
    assert steps(run)["join"].status == Status.UPSTREAM_FAILED


def test_a_success_counts_for_a_step_that_was_skipped(marks):
    """upstream_left stays the number of upstream steps not succeeded, skipped steps too, so a
    mark by hand that re-opens them finds it right (and a success racing it is not lost)."""
    run, _ready = engine.start_run("t_mark", {})
    StepRun.objects.filter(run=run, step_name="archive").update(status=Status.UPSTREAM_FAILED)

    queued, _claimed = statements.upstream_done(run.pk, ["check", "archive"], timezone.now())

    now = steps(run)
    assert [pk for pk, _queue in queued] == [now["check"].pk]
    assert (now["archive"].status, now["archive"].upstream_left) == (Status.UPSTREAM_FAILED, 0)


# --- who may ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_it_forbids_stakeholders_and_changes_nothing(marks, stakeholder_client, method):
    run = failed_run()
    before = snapshot(run)

    response = getattr(stakeholder_client, method)(mark_url(steps(run)["check"]), {"reason": "x"})

    assert response.status_code == 403
    assert snapshot(run) == before


def test_it_sends_anonymous_users_to_log_in(marks, client):
    run = failed_run()

    response = client.post(mark_url(steps(run)["check"]))

    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_it_refuses_other_methods(marks, operator_client):
    run = failed_run()

    assert operator_client.put(mark_url(steps(run)["check"])).status_code == 405


# --- on real workers ----------------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_on_a_worker_a_failed_step_marked_succeeded_lets_its_dependants_run_with_none(mark_workers, operator_client):
    mark_workers()
    run = tasks.trigger("t_mark", {"fail": True}, source="cli")
    run = wait_for(lambda: Run.objects.filter(pk=run.pk, status=Status.FAILED).first(), timeout=60,
                   message="the run to fail")
    assert steps(run)["publish"].status == Status.UPSTREAM_FAILED

    response = post_mark(operator_client, steps(run)["check"], reason="the check is wrong, the data is fine")

    assert response.status_code == 302
    run = wait_for(lambda: Run.objects.filter(pk=run.pk, status=Status.SUCCEEDED).first(), timeout=60,
                   message="the re-opened run to succeed")
    publish = steps(run)["publish"]
    assert output(publish) == {"received": None}
    assert "publish received None" in publish.log
    assert run.steps_finished == run.steps_total == 4
    event = AuditEvent.objects.get(action="step_mark")
    assert (event.details["reason"], event.username) == ("the check is wrong, the data is fine", "olivia")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@override_settings(STEP_LOST_AFTER_SECONDS=1.5)
def test_on_a_worker_a_stuck_step_marked_failed_ends_the_run(mark_workers, operator_client):
    worker = mark_workers(**FAST_HEARTBEAT)
    run = tasks.trigger("t_slow", {"seconds": 120}, source="cli")
    wait_for(lambda: "crawling" in artifacts.log_tail(artifacts.log_path(run.pk, "crawl", 1)), timeout=60,
             message="the slow step to start")
    worker.send_signal(signal.SIGKILL)  # its worker is gone: nobody marks the step alive any more
    worker.wait()
    wait_for(lambda: actions.is_stuck(steps(run)["crawl"]), timeout=10, message="the step to be stuck")
    crawl = steps(run)["crawl"]
    page = operator_client.get(reverse("run_step", args=[run.pk, "crawl"])).content.decode()
    assert "✗ Mark failed…" in page and "✓ Mark succeeded…" in page

    response = post_mark(operator_client, crawl, outcome="failed", reason="its machine is gone")

    assert response.status_code == 302
    run.refresh_from_db()
    now = steps(run)
    assert (run.status, run.steps_finished) == (Status.FAILED, 2)
    assert (now["crawl"].status, now["after_crawl"].status) == (Status.FAILED, Status.UPSTREAM_FAILED)
    assert "crawling" in now["crawl"].log  # what the lost attempt printed is kept
    assert now["crawl"].heartbeat_at < timezone.now() - datetime.timedelta(seconds=1)
