"""The runs API: list pipelines, start runs (parameters checked as the form checks them), read
runs with their steps and metrics, page through them, cancel, retry, re-run and read logs;
every refusal is JSON naming what is wrong, and every write is audited with the token."""

import datetime
import json

import pytest
from django.test import Client
from django.utils import timezone

from app.api import tokens
from app.models import AuditEvent, ParameterSet, PipelineState, Run, Status
from app.pipelines.params import ParamError
from app.runs import engine, paramsets
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

BROKEN = {"middle": True}


@pytest.fixture
def ops(db):
    return make_user("otto", "operators")


@pytest.fixture
def writer(ops):
    return tokens.create(ops, "ci job", scopes=["runs:read", "runs:write"])[1]


@pytest.fixture
def reader(ops):
    return tokens.create(ops, "dashboard", scopes=["runs:read"])[1]


@pytest.fixture
def chain(define):
    """first → middle → last; `middle` fails while BROKEN says so, and logs a line."""
    from app.pipelines import Params, param

    class ChainParams(Params):
        size: int = param(3, ge=1, le=10, help="How many")
        label: str = param("x", max_length=20)

    pipe = define("t_chain", params=ChainParams)

    @pipe.step()
    def first(ctx):
        print("first says hello")
        ctx.log_metric("rows", ctx.params.size)
        return ctx.params.size

    @pipe.step(after=[first])
    def middle(ctx, first):
        print(f"middle got {first}")
        if BROKEN["middle"]:
            raise RuntimeError("middle is broken")
        return first * 2

    @pipe.step(after=[middle])
    def last(ctx, middle):
        return middle + 1

    BROKEN["middle"] = True
    yield pipe
    BROKEN["middle"] = True


def call(method, url, secret, body=None, **extra):
    client = Client(enforce_csrf_checks=True)  # the API needs no CSRF token: it is not cookie-authenticated
    if secret is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    if body is not None:
        extra.update(data=body if isinstance(body, (str, bytes)) else json.dumps(body), content_type="application/json")
    return getattr(client, method)(url, **extra)


def finished(name, **params):
    return engine.run_inline(*engine.start_run(name, params))


# --- pipelines -----------------------------------------------------------------------------


def test_it_lists_pipelines_with_their_parameters_and_steps(chain, reader, ops):
    paramsets.create("t_chain", "big", {"size": 9, "label": "big"}, ops)
    PipelineState.objects.create(pipeline_name="t_chain", paused=True)
    response = call("get", "/api/pipelines", reader)
    assert response.status_code == 200
    listed = {p["name"]: p for p in response.json()}
    assert {"fanout_demo", "train_classifier", "t_chain"} <= set(listed)
    mine = listed["t_chain"]
    assert [p["name"] for p in mine["params"]] == ["size", "label"]
    size = mine["params"][0]
    assert (size["type"], size["default"], size["ge"], size["le"], size["help"]) == ("int", 3, 1, 10, "How many")
    assert mine["steps"] == [
        {"name": "first", "upstream": [], "queue": "default"},
        {"name": "middle", "upstream": ["first"], "queue": "default"},
        {"name": "last", "upstream": ["middle"], "queue": "default"},
    ]
    assert mine["parameter_sets"] == ["big"] and mine["paused"] is True and mine["url"] == "/pipelines/t_chain/"
    assert call("get", "/api/pipelines/t_chain", reader).json() == mine


def test_an_unknown_pipeline_is_a_404_naming_it(reader, writer):
    for method, url, secret in (("get", "/api/pipelines/nope", reader), ("post", "/api/pipelines/nope/runs", writer)):
        response = call(method, url, secret, {} if method == "post" else None)
        assert response.status_code == 404
        assert response.json()["error"].startswith("there is no pipeline named 'nope' (known pipelines: ")


# --- starting runs ---------------------------------------------------------------------------


def test_it_starts_a_run_with_parameters_read_like_the_form(chain, writer, ops):
    response = call("post", "/api/pipelines/t_chain/runs", writer, {"params": {"size": "5"}})
    assert response.status_code == 201, response.content
    started = response.json()
    run = Run.objects.get(pk=started["run"]["id"])
    assert run.params == {"size": 5, "label": "x"} and run.trigger_source == "api" and run.triggered_by == ops
    assert started["run"]["status"] == "queued" and started["warnings"] == []
    assert [s["status"] for s in started["run"]["steps"]] == ["queued", "pending", "pending"]
    assert started["run"]["url"] == f"/runs/{run.pk}/"
    event = AuditEvent.objects.get(action="trigger")
    assert event.username == "otto" and event.details["token"] == "ci job" and event.details["params"] == run.params


def test_bad_parameters_are_a_422_with_the_forms_messages_and_start_nothing(chain, writer):
    response = call("post", "/api/pipelines/t_chain/runs", writer, {"params": {"size": 11, "label": "y" * 21, "colour": 1}})
    assert response.status_code == 422
    errors = response.json()["errors"]
    with pytest.raises(ParamError) as form_error:  # the very messages the run form shows
        chain.parse_params({"size": "11", "label": "y" * 21, "colour": "1"})
    assert errors == form_error.value.errors
    assert errors["size"] == "11 is above the maximum 10" and "unknown parameter" in errors["colour"]
    assert "the parameters are not valid" in response.json()["error"]
    assert not Run.objects.exists() and not AuditEvent.objects.filter(action="trigger").exists()


@pytest.mark.parametrize("body, field, message", [
    ({"params": [1, 2]}, "params", "valid dictionary"),
    ({"parameter_set": 5}, "parameter_set", "valid string"),
    ("[1]", "", "must be a JSON object"),
    ("{", "", "not valid JSON"),
    ("[" * 50 + "]" * 50, "", "more than 20 deep"),
    ('{"params": {"size": ' + "9" * 50 + "}}", "", "more than 40 characters"),
])
def test_a_body_that_cannot_be_read_is_refused_naming_what_is_wrong(chain, writer, body, field, message):
    response = call("post", "/api/pipelines/t_chain/runs", writer, body)
    assert response.status_code in (400, 422) and message in response.json()["error"], response.content
    if field:
        assert field in response.json()["errors"]
    assert not Run.objects.exists()


def test_it_starts_from_a_parameter_set_and_records_its_revision(chain, writer, ops):
    pset = paramsets.create("t_chain", "big", {"size": 9, "label": "big"}, ops)
    response = call("post", "/api/pipelines/t_chain/runs", writer, {"parameter_set": "big"})
    run = Run.objects.get(pk=response.json()["run"]["id"])
    assert run.params == {"size": 9, "label": "big"} and run.parameter_revision == pset.latest
    assert response.json()["run"]["parameter_set"] == {"name": "big", "revision": 1}
    # A value on top of the set's is a run of other values, not of the set.
    other = call("post", "/api/pipelines/t_chain/runs", writer, {"parameter_set": "big", "params": {"size": 2}}).json()
    assert other["run"]["params"] == {"size": 2, "label": "big"} and other["run"]["parameter_set"] is None
    missing = call("post", "/api/pipelines/t_chain/runs", writer, {"parameter_set": "small"})
    assert missing.status_code == 422 and "no parameter set named 'small' (it has: big)" in missing.json()["error"]


def test_a_paused_pipeline_runs_what_is_started_with_a_warning(chain, writer):
    PipelineState.objects.create(pipeline_name="t_chain", paused=True)
    response = call("post", "/api/pipelines/t_chain/runs", writer, {})
    assert response.status_code == 201 and "t_chain is paused" in response.json()["warnings"][0]


# --- reading runs ------------------------------------------------------------------------------


def test_it_shows_a_run_with_its_steps_times_errors_and_metrics(chain, reader):
    run = finished("t_chain", size=4)
    response = call("get", f"/api/runs/{run.pk}", reader)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "failed" and body["pipeline"] == "t_chain" and body["params"] == {"size": 4, "label": "x"}
    steps = {s["name"]: s for s in body["steps"]}
    assert [s["name"] for s in body["steps"]] == ["first", "middle", "last"]
    assert steps["first"]["status"] == "succeeded" and steps["first"]["seconds"] >= 0
    assert steps["middle"]["status"] == "failed" and "middle is broken" in steps["middle"]["error"]
    assert steps["last"]["status"] == "upstream_failed"
    assert body["metrics"] == [{"step": "first", "name": "rows", "value": 4.0, "logged_at": body["metrics"][0]["logged_at"]}]
    assert datetime.datetime.fromisoformat(body["finished_at"]) >= datetime.datetime.fromisoformat(body["started_at"])


def test_an_unknown_run_or_a_malformed_id_is_a_json_404(reader):
    assert call("get", "/api/runs/999", reader).json() == {"error": "there is no run #999"}
    for url in ("/api/runs/abc", "/api/runs/1/nothing", "/api/nowhere"):
        response = call("get", url, reader)
        assert response.status_code == 404 and "no API endpoint" in response.json()["error"], url


def test_it_pages_through_runs_newest_first_with_filters(chain, reader):
    ids = [engine.start_run("t_chain", {})[0].pk for _ in range(7)]
    other = engine.start_run("fanout_demo", {"rows": "5"})[0]
    seen, url = [], "/api/runs?pipeline=t_chain&page_size=3"
    while url:
        page = call("get", url, reader).json()
        assert len(page["results"]) <= 3
        seen += [r["id"] for r in page["results"]]
        url = page["next"]
    assert seen == sorted(ids, reverse=True)
    assert [r["id"] for r in call("get", "/api/runs", reader).json()["results"]][:1] == [other.pk]
    Run.objects.filter(pk=ids[0]).update(status=Status.FAILED)
    assert [r["id"] for r in call("get", "/api/runs?status=failed", reader).json()["results"]] == [ids[0]]
    later = (timezone.now() + datetime.timedelta(hours=1)).isoformat()
    assert call("get", "/api/runs", reader, data={"created_after": later}).json()["results"] == []


@pytest.mark.parametrize("query, field, message", [
    ("status=upstream_failed", "", "a run is never upstream_failed"),
    ("status=sleeping", "status", "Input should be"),
    ("page_size=x", "page_size", "valid integer"),
    ("created_after=yesterday", "created_after", "use an ISO 8601 date and time"),
    ("created_before=0.5", "created_before", "use an ISO 8601 date and time"),
    ("cursor=%%%", "cursor", "Invalid Cursor"),
    ("pipline=t_chain", "", "unknown query parameter 'pipline'"),
])
def test_bad_filters_are_a_422_naming_the_filter(reader, query, field, message):
    response = call("get", f"/api/runs?{query}", reader)
    assert response.status_code == 422 and message in response.json()["error"], response.content
    if field:
        assert field in response.json()["errors"]


def test_it_serves_a_steps_log_as_text(chain, reader):
    run = finished("t_chain", size=2)
    response = call("get", f"/api/runs/{run.pk}/steps/middle/log", reader)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    text = b"".join(response.streaming_content).decode()
    assert "middle got 2" in text
    assert b"".join(call("get", f"/api/runs/{run.pk}/steps/middle/log?attempt=1", reader).streaming_content) == text.encode()
    for url, message in (
        (f"/api/runs/{run.pk}/steps/nope/log", "has no step named 'nope'"),
        (f"/api/runs/{run.pk}/steps/last/log", "has not started (upstream_failed)"),
        (f"/api/runs/{run.pk}/steps/middle/log?attempt=2", "has attempts 1 to 1, not 2"),
    ):
        response = call("get", url, reader)
        assert response.status_code == 404 and message in response.json()["error"], url


# --- acting on runs ------------------------------------------------------------------------------


def test_it_retries_a_failed_run_from_the_failure(chain, writer):
    run = finished("t_chain", size=2)
    BROKEN["middle"] = False
    response = call("post", f"/api/runs/{run.pk}/retry", writer)
    assert response.status_code == 201, response.content
    retry = response.json()
    assert retry["retry_of"] == run.pk and retry["attempt"] == 2 and retry["trigger_source"] == "retry"
    steps = {s["name"]: s for s in retry["steps"]}
    assert steps["first"]["status"] == "succeeded" and steps["first"]["reused_from_run"] == run.pk
    assert steps["middle"]["status"] == "queued"
    event = AuditEvent.objects.get(action="retry")
    assert event.details["token"] == "ci job" and event.details["reused_steps"] == ["first"]


def test_it_reruns_and_cancels(chain, writer):
    run = finished("t_chain", size=2)
    rerun = call("post", f"/api/runs/{run.pk}/rerun", writer)
    assert rerun.status_code == 201 and rerun.json()["params"] == run.params
    new_id = rerun.json()["id"]
    cancelled = call("post", f"/api/runs/{new_id}/cancel", writer)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancel_requested"] is True
    assert {e.action: e.details["token"] for e in AuditEvent.objects.filter(action__in=["rerun", "cancel"])} == {
        "rerun": "ci job", "cancel": "ci job",
    }


def test_an_action_that_does_not_apply_is_a_409_saying_why(chain, writer):
    BROKEN["middle"] = False
    done = finished("t_chain")
    queued = engine.start_run("t_chain", {})[0]
    for url, message in (
        (f"/api/runs/{done.pk}/retry", "Only a failed or cancelled run can be retried"),
        (f"/api/runs/{done.pk}/cancel", "has already finished (succeeded)"),
        (f"/api/runs/{queued.pk}/rerun", "has not finished yet"),
    ):
        before = AuditEvent.objects.count()
        response = call("post", url, writer)
        assert response.status_code == 409 and message in response.json()["error"], url
        assert AuditEvent.objects.count() == before
    assert call("post", "/api/runs/999/cancel", writer).status_code == 404


# --- who may call --------------------------------------------------------------------------------


WRITES = ["/api/pipelines/t_chain/runs", "/api/runs/{run}/cancel", "/api/runs/{run}/retry", "/api/runs/{run}/rerun"]
READS = ["/api/pipelines", "/api/pipelines/t_chain", "/api/runs", "/api/runs/{run}", "/api/runs/{run}/steps/first/log"]


def test_each_endpoint_takes_only_a_token_with_its_scope(chain, ops, reader, writer):
    run = finished("t_chain")
    predict_only = tokens.create(ops, "serving")[1]
    for url in READS:
        url = url.format(run=run.pk)
        assert call("get", url, reader).status_code == 200, url
        response = call("get", url, predict_only)
        assert response.status_code == 403 and "does not have the scope runs:read" in response.json()["error"], url
    for url in WRITES:
        url = url.format(run=run.pk)
        before = (Run.objects.count(), AuditEvent.objects.count())
        response = call("post", url, reader, {})
        assert response.status_code == 403 and "does not have the scope runs:write" in response.json()["error"], url
        assert (Run.objects.count(), AuditEvent.objects.count()) == before
    response = call("post", "/api/models/demo/predict", reader, {"instances": [[1]]})
    assert response.status_code == 403 and "scope predict" in response.json()["error"]


def test_a_session_does_not_authenticate_the_api(chain, operator_client):
    response = operator_client.get("/api/runs")
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")
    assert "no API token" in response.json()["error"]


def test_an_expired_token_is_a_401_saying_so(chain, ops):
    token, secret = tokens.create(ops, "short", scopes=["runs:read"], expires_at=timezone.now() + datetime.timedelta(days=1))
    assert call("get", "/api/runs", secret).status_code == 200
    ApiToken = type(token)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - datetime.timedelta(minutes=1))
    response = call("get", "/api/runs", secret)
    assert response.status_code == 401 and "“short” expired on" in response.json()["error"]


def test_a_token_whose_user_stopped_being_an_operator_cannot_use_runs_scopes(chain, ops, writer):
    ops.groups.clear()
    response = call("post", "/api/pipelines/t_chain/runs", writer, {})
    assert response.status_code == 403 and "no longer an operator" in response.json()["error"]
    assert not Run.objects.exists()


def test_the_wrong_method_is_a_json_405(reader):
    response = call("delete", "/api/runs", reader)
    assert response.status_code == 405 and response["Allow"] == "GET" and "use GET" in response.json()["error"]


def test_a_database_that_refuses_the_run_is_a_503_and_nothing_is_left(chain, writer):
    from django.db import connection

    def refuse(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("INSERT") and "app_run" in sql:
            from django.db import OperationalError

            raise OperationalError("database or disk is full")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse):
        response = call("post", "/api/pipelines/t_chain/runs", writer, {})
    assert response.status_code == 503 and "the database refused the request (database or disk is full)" in response.json()["error"]
    assert not Run.objects.exists() and not ParameterSet.objects.exists()


def test_a_scheduled_run_says_which_schedule_and_slot_started_it(chain, reader):
    from app.models import Schedule, ScheduledSlot, SlotOutcome

    run = engine.start_run("t_chain", {})[0]
    schedule = Schedule.objects.create(pipeline_name="t_chain", name="nightly", cron="0 2 * * *")
    slot = timezone.now().replace(microsecond=0)
    ScheduledSlot.objects.create(schedule=schedule, slot=slot, outcome=SlotOutcome.STARTED, run=run, missed=2)
    body = call("get", f"/api/runs/{run.pk}", reader).json()
    assert body["scheduled_by"]["schedule"] == "nightly" and body["scheduled_by"]["catch_up"] is True
    assert datetime.datetime.fromisoformat(body["scheduled_by"]["slot"]) == slot
    assert call("get", f"/api/runs/{finished('t_chain').pk}", reader).json()["scheduled_by"] is None


def test_the_docs_page_and_schema_are_for_signed_in_users_and_use_no_cdn(stakeholder_client):
    for url in ("/api/docs", "/api/openapi.json"):
        assert Client().get(url).status_code == 302  # anonymous: the login page first
    page = stakeholder_client.get("/api/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert 'href="/"' in page  # a way back to the dashboard
    schema = stakeholder_client.get("/api/openapi.json").json()
    assert {"/api/runs", "/api/pipelines/{name}/runs", "/api/models/{name}/predict"} <= set(schema["paths"])
