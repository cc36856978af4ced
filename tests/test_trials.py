"""Shadow and canary trials: a shadow never changes an answer, a canary answers its share,
promote / abort / a deploy end a trial, every bad input is refused with a clear message,
and a retrain rule's shadow period promotes the new version when it is over."""

import datetime
import random
import sys
import time
import traceback
from collections import Counter

import pytest
from django.test import Client
from django.utils import timezone

from app import artifacts
from app.mlmodels import deployments, predlog, serving, trials
from app.models import (
    AuditAction,
    AuditEvent,
    Deployment,
    DeploymentKind,
    Prediction,
    Promotion,
    RegisteredModel,
    Role,
    Run,
    Trial,
    TrialOutcome,
    Verdict,
)
from app.runs import engine, paramsets
from tests.conftest import train_version, wait_for

ROW = {"instances": [[0.5, 1.5]]}


def text(response) -> str:
    return response.content.decode()


@pytest.fixture(autouse=True)
def fresh_models():
    """Ids (and so file paths) are given again after a rolled-back test: forget the models
    this process loaded for an earlier test."""
    serving._held.clear()
    yield
    serving.shadow.wait_idle()  # no copy left to be answered after the test's database is gone
    serving._held.clear()


@pytest.fixture
def two(model_demo, operator):
    """v1 (predicts 3) live, v2 (predicts 8) registered."""
    v1 = train_version(constant=3)
    deployments.deploy(v1, operator, "first")
    v2 = train_version(constant=8)
    return v1, v2


def model():
    return RegisteredModel.objects.get(name="demo")


def ask(n=1):
    return [serving.predict("demo", ROW) for _ in range(n)]


def shadow_state() -> str:
    """What the shadow and the log hold, and where the shadow's thread is: said when a test
    waits in vain for its answers."""
    thread, own = serving.shadow.thread, serving.shadow.queue
    frame = sys._current_frames().get(thread.ident) if thread is not None else None
    return (f"shadow thread alive: {thread is not None and thread.is_alive()}, queued: "
            f"{own.unfinished_tasks if own else None}, dropped: {serving.shadow.dropped}; "
            f"log rows by role: {dict(Counter(Prediction.objects.values_list('role', flat=True)))}, "
            f"log buffer: {len(predlog.prediction_log.buffer)}, log dropped: {predlog.prediction_log.dropped}\n"
            + ("".join(traceback.format_stack(frame)) if frame else "no stack"))


# --- shadow ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_shadow_never_changes_an_answer_and_its_answers_are_logged(two, operator, operator_client):
    v1, v2 = two
    trials.start(model(), v2, "shadow", 0, operator, "try v2 on real traffic")
    answers = ask(200)
    assert {(a["version"], tuple(a["predictions"])) for a in answers} == {(1, (3,))}
    live_uids = {a["id"] for a in answers}
    try:
        shadows = wait_for(
            lambda: (rows := list(Prediction.objects.filter(role=Role.SHADOW))) and len(rows) == 200 and rows,
            message="the 200 shadow answers in the log",
        )
    except AssertionError as exc:
        order = [a["id"] for a in answers]
        paired = {str(p) for p in Prediction.objects.filter(role=Role.SHADOW).values_list("pair", flat=True)}
        missing = [i for i, uid in enumerate(order) if uid not in paired]
        raise AssertionError(f"{exc}\n{shadow_state()}\nrequests without a shadow row (by order): {missing}; "
                             f"rows written by the log: {predlog.prediction_log.written}") from None
    assert {str(r.pair) for r in shadows} == live_uids
    assert {(r.version_id, r.status, r.agreement) for r in shadows} == {(v2.pk, 200, 0.0)}
    assert Prediction.objects.filter(role=Role.LIVE, version=v1, status=200).count() == 200
    page = text(operator_client.get("/models/demo/"))
    assert "Agrees with live" in page and "<strong>0.0 %</strong>" in page
    assert "✓ Promote v2" in page and "✗ Abort" in page


@pytest.mark.django_db(transaction=True)
def test_a_shadow_that_cannot_load_never_fails_a_live_answer(two, operator):
    v1, v2 = two
    trials.start(model(), v2, "shadow", 0, operator, "try v2")
    artifacts.resolve(v2.file_path).unlink()  # gone from the store after the start
    answers = ask(50)
    assert {(a["version"], tuple(a["predictions"])) for a in answers} == {(1, (3,))}
    rows = wait_for(
        lambda: (rows := list(Prediction.objects.filter(role=Role.SHADOW))) and len(rows) == 50 and rows,
        message="the 50 failed shadow answers in the log",
    )
    assert {r.status for r in rows} == {503} and "cannot be loaded" in rows[0].error
    assert Prediction.objects.filter(role=Role.LIVE, status=200).count() == 50


def test_the_same_agreement_is_logged_when_the_shadow_agrees(model_demo, operator, db):
    """serving.shadow.run directly (the thread's own connection cannot see this test's
    transaction): a candidate that answers like live agrees on every instance."""
    v1 = train_version(constant=3)
    deployments.deploy(v1, operator, "first")
    same = train_version(constant=3)
    trials.start(model(), same, "shadow", 0, operator, "a retrain on the same data")
    live = serving.read_live("demo")
    answer = serving.predict("demo", {"instances": [[0, 0], [1, 1]]})
    serving.shadow.run("demo", live, [[0, 0], [1, 1]], answer["predictions"], answer["id"], "", False)
    row = Prediction.objects.get(role=Role.SHADOW, pair=answer["id"])
    assert (row.agreement, row.n_instances, row.version_id) == (1.0, 2, same.pk)
    stats = trials.stats(Trial.objects.select_related("model__live").get())
    assert stats["agreement_pct"] == 100.0 and stats["candidate"]["requests"] >= 1


# --- canary ------------------------------------------------------------------------------


def test_a_canary_answers_its_share_and_each_answer_comes_from_the_version_it_names(two, operator, operator_client):
    trials.start(model(), two[1], "canary", "20", operator, "a fifth of traffic")
    random.seed(15)
    answers = ask(1000)
    by_version = {1: 0, 2: 0}
    for a in answers:
        by_version[a["version"]] += 1
        assert a["predictions"] == [{1: 3, 2: 8}[a["version"]]]
    assert 150 <= by_version[2] <= 250, by_version
    assert Prediction.objects.filter(role=Role.CANARY, version=two[1]).count() == by_version[2]
    page = text(operator_client.get("/models/demo/"))
    assert "canary 20 %" in page and f"{by_version[2] / 10:.1f} %" in page


# --- promote, abort, replaced ------------------------------------------------------------


def test_promote_makes_the_candidate_answer_everything(two, operator, operator_client):
    trials.start(model(), two[1], "canary", 30, operator, "canary first")
    response = operator_client.post("/models/demo/trial/promote/", {"reason": "canary looks fine"})
    assert response.status_code == 302 and response["Location"] == "/models/demo/"
    assert {a["version"] for a in ask(50)} == {2}
    trial = Trial.objects.get()
    assert (trial.outcome, trial.ended_by_name, trial.end_reason) == (TrialOutcome.PROMOTED, "olivia", "canary looks fine")
    assert model().trial_id is None
    live = Deployment.objects.get(pk=model().live_id)
    assert (live.version_id, live.kind) == (two[1].pk, DeploymentKind.TRIAL)
    assert AuditEvent.objects.filter(action=AuditAction.TRIAL_PROMOTE, username="olivia").exists()
    page = text(operator_client.get("/models/demo/"))
    assert "Promoted: v2 of demo is live" in page
    assert "promoted from shadow or canary" in page  # the production history
    assert "canary 30 %" in page and "canary first" in page and "canary looks fine" in page


def test_abort_sends_every_request_to_the_live_version(two, operator, operator_client):
    trials.start(model(), two[1], "canary", 50, operator, "half")
    response = operator_client.post("/models/demo/trial/abort/", {"reason": "p95 <b>doubled</b>"})
    assert response.status_code == 302
    assert {a["version"] for a in ask(50)} == {1}
    trial = Trial.objects.get()
    assert (trial.outcome, trial.ended_by_name) == (TrialOutcome.ABORTED, "olivia")
    assert AuditEvent.objects.filter(action=AuditAction.TRIAL_ABORT).count() == 1
    page = text(operator_client.get("/models/demo/"))
    assert "Trial aborted" in page and "p95 &lt;b&gt;doubled&lt;/b&gt;" in page and "<b>doubled" not in page
    assert "▶ Start trial" in page


def test_a_deploy_during_a_trial_ends_it_as_replaced(two, operator):
    trials.start(model(), two[1], "shadow", 0, operator, "shadow")
    v3 = train_version(constant=5)
    deployments.deploy(v3, operator, "hotfix")
    trial = Trial.objects.get()
    assert trial.outcome == TrialOutcome.REPLACED and trial.ended_at is not None
    assert model().trial_id is None
    assert {a["version"] for a in ask(10)} == {3}


def test_deploying_the_candidate_by_hand_promotes_it_and_a_redeploy_keeps_it(two, operator):
    trials.start(model(), two[1], "canary", 10, operator, "canary")
    deployments.redeploy(model(), operator, "reload")
    assert model().trial_id is not None  # the live version did not change
    deployments.deploy(two[1], operator, "by hand")
    assert Trial.objects.get().outcome == TrialOutcome.PROMOTED and model().trial_id is None


# --- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("data, message", [
    ({"percent": "0"}, "from 1 to 99 % (it is 0 %)"),
    ({"percent": "100"}, "from 1 to 99 % (it is 100 %)"),
    ({"percent": "abc"}, "a whole number of percent from 1 to 99, not “abc”"),
    ({"version": "99"}, "demo has no version 99."),
    ({"version": "1"}, "demo v1 is the live version"),
    ({"reason": "  "}, "Give a short reason"),
    ({"reason": "x" * 201}, "keep it to 200"),
    ({"mode": "blue-green"}, "Pick how the candidate takes part"),
])
def test_a_bad_start_is_a_422_with_a_clear_message_and_changes_nothing(two, operator_client, data, message):
    form = {"version": "2", "mode": "canary", "percent": "20", "reason": "try", **data}
    response = operator_client.post("/models/demo/trial/start/", form)
    assert response.status_code == 422
    assert message.replace("“", "").replace("”", "") in text(response).replace("“", "").replace("”", "")
    assert not Trial.objects.exists() and model().trial_id is None
    assert not AuditEvent.objects.filter(action=AuditAction.TRIAL_START).exists()


def test_a_good_start_from_the_page(two, operator_client):
    response = operator_client.post(
        "/models/demo/trial/start/", {"version": "2", "mode": "shadow", "percent": "", "reason": "try it"}
    )
    assert response.status_code == 302
    trial = Trial.objects.get()
    assert (trial.version_id, trial.mode, trial.percent, trial.started_by_name) == (two[1].pk, "shadow", 0, "olivia")
    event = AuditEvent.objects.get(action=AuditAction.TRIAL_START)
    assert event.details == {"reason": "try it", "mode": "shadow", "live": "v1"}
    assert "answers a copy of every request to demo in shadow" in text(operator_client.get("/models/demo/"))


def test_one_trial_at_a_time(two, operator, operator_client):
    trials.start(model(), two[1], "shadow", 0, operator, "first")
    train_version(constant=5)
    response = operator_client.post(
        "/models/demo/trial/start/", {"version": "3", "mode": "canary", "percent": "20", "reason": "second"}
    )
    assert response.status_code == 422 and "v2 in shadow is on trial already" in text(response)
    assert Trial.objects.count() == 1
    with pytest.raises(trials.TrialRefused, match="v2 in shadow is on trial already"):
        trials.start(model(), 3, "canary", 20, operator, "second")


def test_no_trial_without_a_live_version(model_demo, operator, operator_client):
    train_version(constant=3)
    with pytest.raises(trials.TrialRefused, match="No version of demo is live"):
        trials.start(model(), 1, "shadow", 0, operator, "try")
    response = operator_client.post("/models/demo/trial/start/", {"version": "1", "mode": "shadow", "reason": "try"})
    assert response.status_code == 422 and "No version of demo is live" in text(response)
    assert not Trial.objects.exists()


def test_a_version_whose_step_failed_cannot_be_tried(two, operator):
    engine.run_inline(*engine.start_run("t_model_demo", {"constant": 4, "fail_after_register": True}))
    broken = model().versions.get(version=3)
    with pytest.raises(trials.TrialRefused, match="did not succeed"):
        trials.start(model(), broken, "canary", 10, operator, "try")
    assert not Trial.objects.exists()


def test_promote_or_abort_without_a_trial_says_so(two, operator_client):
    for action in ("promote", "abort"):
        response = operator_client.post(f"/models/demo/trial/{action}/", {"reason": "why"}, follow=True)
        assert f"No trial of demo is running, so there is nothing to {action}." in text(response)
    assert model().live.version_id == two[0].pk


def test_promote_and_abort_need_a_reason(two, operator, operator_client):
    trials.start(model(), two[1], "shadow", 0, operator, "first")
    for action in ("promote", "abort"):
        response = operator_client.post(f"/models/demo/trial/{action}/", {"reason": ""}, follow=True)
        assert "Give a short reason" in text(response)
    assert model().trial_id is not None and model().live.version_id == two[0].pk


# --- roles, methods, CSRF ----------------------------------------------------------------


def test_roles_methods_and_csrf(two, operator, stakeholder_client):
    urls = ["/models/demo/trial/start/", "/models/demo/trial/promote/", "/models/demo/trial/abort/"]
    form = {"version": "2", "mode": "canary", "percent": "20", "reason": "try"}
    for url in urls:
        assert stakeholder_client.post(url, form).status_code == 403
    operator_browser = Client(enforce_csrf_checks=True)
    operator_browser.force_login(operator)
    for url in urls:
        assert operator_browser.get(url).status_code == 405
        assert operator_browser.post(url, form).status_code == 403  # no CSRF token
    assert operator_browser.post("/models/nope/trial/start/", form).status_code == 403
    ok = Client()
    ok.force_login(operator)
    assert ok.post("/models/nope/trial/start/", form).status_code == 404
    assert ok.post("/models/nope/trial/abort/", {"reason": "x"}).status_code == 404
    assert not Trial.objects.exists()


# --- retrain with a shadow period --------------------------------------------------------


def test_retrain_with_a_shadow_period_tries_the_new_version_first_then_promotes_it(two, operator, operator_client):
    run, ready = engine.start_run("t_model_demo", {"constant": 8, "accuracy": 0.99}, user=operator)
    Promotion.objects.create(run=run, model=model(), rule="at_least", metric="accuracy", requested_by=operator,
                             shadow_minutes=30)
    before = timezone.now()
    engine.run_inline(run, ready)
    promotion = Promotion.objects.get(run=run)
    assert promotion.verdict == Verdict.SHADOW
    assert "v3 answers in shadow for 30 min, then goes live" in promotion.message
    trial = Trial.objects.get()
    assert (trial.mode, trial.version.version, trial.promotion_id) == ("shadow", 3, promotion.pk)
    assert before + datetime.timedelta(minutes=29) < trial.promote_after < timezone.now() + datetime.timedelta(minutes=31)
    assert model().live.version_id == two[0].pk  # still v1
    page = text(operator_client.get("/models/demo/"))
    assert "in shadow before deploying" in page and "It goes live by itself at" in page

    assert trials.promote_due(now=timezone.now() + datetime.timedelta(minutes=10)) == 0  # not yet
    assert trials.promote_due(now=timezone.now() + datetime.timedelta(minutes=31)) == 1
    assert {a["version"] for a in ask(5)} == {3}
    promotion.refresh_from_db()
    assert promotion.verdict == Verdict.PROMOTED and promotion.message.startswith("deployed v3 after 30 min in shadow")
    assert Trial.objects.get().outcome == TrialOutcome.PROMOTED
    assert Deployment.objects.get(pk=model().live_id).kind == DeploymentKind.TRIAL
    assert trials.promote_due(now=timezone.now() + datetime.timedelta(minutes=60)) == 0  # once
    assert "deployed v3 after 30 min in shadow" in text(operator_client.get("/models/demo/"))


def test_a_shadow_period_while_a_trial_runs_says_so(two, operator):
    trials.start(model(), two[1], "canary", 10, operator, "by hand")
    run, ready = engine.start_run("t_model_demo", {"accuracy": 0.99}, user=operator)
    Promotion.objects.create(run=run, model=model(), rule="at_least", metric="accuracy", requested_by=operator,
                             shadow_minutes=30)
    engine.run_inline(run, ready)
    promotion = Promotion.objects.get(run=run)
    assert promotion.verdict == Verdict.KEPT
    assert "v2 as a canary for 10 % of requests is on trial already" in promotion.message
    assert Trial.objects.count() == 1 and model().live.version_id == two[0].pk


def test_the_retrain_form_takes_a_shadow_period(two, operator, operator_client):
    pset = paramsets.create("t_model_demo", "better", {"accuracy": 0.95}, operator)
    form = {"parameter_set": pset.pk, "rule": "at_least", "metric": "accuracy"}
    for bad, message in (("-1", "cannot be negative"), ("20000", "at most 10080 minutes"), ("abc", "whole number of minutes")):
        response = operator_client.post("/models/demo/retrain/", {**form, "shadow_minutes": bad})
        assert response.status_code == 422 and message in text(response)
    assert not Run.objects.filter(promotion__isnull=False).exists()
    response = operator_client.post("/models/demo/retrain/", {**form, "shadow_minutes": "45"})
    assert response.status_code == 302
    assert Promotion.objects.get().shadow_minutes == 45
    assert "Shadow period (minutes)" in text(operator_client.get("/models/demo/"))



@pytest.mark.django_db(transaction=True)
def test_a_stuck_shadow_thread_is_left_behind_and_live_answers_never_wait(two, operator, settings, monkeypatch, caplog):
    """The shadow's thread blocked (here: on loading the candidate, the loading lock held by
    the test) fills its queue; live answers go on, and once it has answered nothing for
    STUCK_SECONDS a new thread takes the copies that come next."""
    settings.SHADOW_QUEUE = 2
    monkeypatch.setattr(serving.Shadow, "STUCK_SECONDS", 0.5)
    serving.shadow.reset()
    ask(1)  # the live version is loaded: its answers need no lock
    trials.start(model(), two[1], "shadow", 0, operator, "try v2")
    with serving._loading:
        answers = ask(5)  # the thread takes one copy and blocks; two wait; the rest are dropped
        first = serving.shadow.thread
        assert {a["version"] for a in answers} == {1} and serving.shadow.dropped >= 2
        assert "dropped 1 copies" in caplog.text
        wait_for(lambda: time.monotonic() - serving.shadow.progress_at > 0.5, message="the thread to count as stuck")
        ask(1)
        assert "a new one takes over" in caplog.text and serving.shadow.thread is not first
        assert {a["version"] for a in ask(2)} == {1}
    serving.shadow.wait_idle()
    wait_for(lambda: Prediction.objects.filter(role=Role.SHADOW).count() >= 4, message="shadow answers after the lock")
