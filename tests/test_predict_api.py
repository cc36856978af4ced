"""The prediction endpoint and API tokens: answers from the deployed version, every error
as JSON with the right status, tokens stored hashed and revocable, and versions switching
under load in every web process without a request ever seeing a mix."""

import datetime
import json
import threading
import urllib.error
import urllib.request

import pytest
from django.test import Client, override_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from app import artifacts
from app.api import tokens
from app.mlmodels import deployments
from app.models import ApiToken, AuditEvent, ModelVersion, Prediction
from tests.conftest import make_user, served, train_version, wait_for

pytestmark = pytest.mark.django_db

URL = "/api/models/demo/predict"


@pytest.fixture
def ops(db):
    return make_user("otto", "operators")


@pytest.fixture
def secret(ops):
    return tokens.create(ops, "tests")[1]


@pytest.fixture
def deployed(model_demo, ops):
    version = train_version(constant=3)
    deployments.deploy(version, ops, "first")
    return version


def post(secret, body, url=URL, **headers):
    client = Client(enforce_csrf_checks=True)  # no CSRF token: the API does not need one
    if secret is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **headers)


def test_it_predicts_with_the_deployed_version(deployed, secret):
    response = post(secret, {"instances": [[1, 2], [3.5, -4]]})
    assert response.status_code == 200
    answer = response.json()
    assert served(answer) == {"model": "demo", "version": 1, "predictions": [3, 3]}
    assert Prediction.objects.get(uid=answer["id"]).status == 200  # the id names the logged request


def test_it_takes_the_path_with_a_trailing_slash_too(deployed, secret):
    assert post(secret, {"instances": [[1, 2]]}, url=URL + "/").json()["predictions"] == [3]


def test_the_next_request_after_a_deploy_uses_the_new_version(deployed, secret, ops):
    assert post(secret, {"instances": [[0, 0]]}).json()["version"] == 1
    newer = train_version(constant=8)
    deployments.deploy(newer, ops, "newer")
    assert served(post(secret, {"instances": [[0, 0]]}).json()) == {"model": "demo", "version": 2, "predictions": [8]}
    deployments.rollback(newer.model, ops, "back")
    assert served(post(secret, {"instances": [[0, 0]]}).json()) == {"model": "demo", "version": 1, "predictions": [3]}


def test_a_redeploy_reloads_the_file_from_the_store(deployed, secret, ops):
    assert post(secret, {"instances": [[0, 0]]}).json()["predictions"] == [3]
    # Someone repairs the file in place (same version, new content): a redeploy picks it up.
    replacement = train_version(constant=5)
    artifacts.resolve(deployed.file_path).write_bytes(artifacts.resolve(replacement.file_path).read_bytes())
    assert post(secret, {"instances": [[0, 0]]}).json()["predictions"] == [3]  # still the loaded one
    deployments.redeploy(deployed.model, ops, "file repaired")
    assert served(post(secret, {"instances": [[0, 0]]}).json()) == {"model": "demo", "version": 1, "predictions": [5]}


@pytest.mark.parametrize("body, message", [
    ("{not json", "the body is not valid JSON"),
    (b"\xff\xfe", "the body is not valid JSON"),
    ([[1, 2]], 'must be a JSON object with "instances"'),
    ({"rows": [[1, 2]]}, 'must be a JSON object with "instances"'),
    ({"instances": []}, '"instances" must be a non-empty list'),
    ({"instances": "1,2"}, '"instances" must be a non-empty list'),
    ({"instances": [1, 2]}, "instance 0 is not a list of features"),
    ({"instances": [[1, 2], [1, 2, 3]]}, "instance 1 has 3 features; the model expects 2"),
    ({"instances": [[1]]}, "instance 0 has 1 features; the model expects 2"),
    ({"instances": [[1, "x"]]}, "instance 0, feature 1: 'x' is not a finite number"),
    ({"instances": [[1, True]]}, "instance 0, feature 1: True is not a finite number"),
    ({"instances": [[1, None]]}, "instance 0, feature 1: None is not a finite number"),
    ('{"instances": [[1, NaN]]}', "instance 0, feature 1: nan is not a finite number"),
])
def test_a_bad_body_is_a_400_naming_what_is_wrong(deployed, secret, body, message):
    response = post(secret, body)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert message in response.json()["error"]


@pytest.mark.parametrize("body, message", [
    ('{"instances": ' + "[" * 100_000 + "]" * 100_000 + "}", "nests lists and objects more than 20 deep"),
    ('{"instances": [[1, ' + "9" * 5000 + "]]}", "a number in the body has more than 40 characters"),
    ('{"instances": [[1, ' + "9" * 400 + "]]}", "a number in the body has more than 40 characters"),
    ('{"instances": [[1, 1e999]]}', "instance 0, feature 1: inf is not a finite number"),
    ('{"instances": [["[[[[[[[[[[[[[[[[[[[[[[[[", 1]]}', "instance 0, feature 0"),  # brackets in a string
])
def test_a_hostile_body_is_a_400_naming_the_limit(deployed, secret, body, message):
    response = post(secret, body)
    assert response.status_code == 400, response.content
    assert message in response.json()["error"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["instances", "x"]), inner, max_size=2),
    max_leaves=12,
)


@hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=JSON)
def test_random_json_never_fails_and_only_good_bodies_predict(deployed, secret, body):
    response = post(secret, body)
    assert response.status_code in (200, 400), response.content
    if response.status_code == 200:
        assert len(response.json()["predictions"]) == len(body["instances"])
    else:
        assert response.json()["error"]


def test_too_many_instances_is_a_400(deployed, secret):
    response = post(secret, {"instances": [[0, 0]] * 10_001})
    assert response.status_code == 400 and "at most 10000 per request" in response.json()["error"]


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_a_body_over_the_upload_limit_is_a_413(deployed, secret):
    response = post(secret, {"instances": [[0, 0]] * 500})
    assert response.status_code == 413 and "too large" in response.json()["error"]


def test_a_deployed_file_that_cannot_be_loaded_is_a_503_naming_the_version(model_demo, secret, ops):
    version = train_version(constant=6)
    deployments.deploy(version, ops, "first")
    artifacts.resolve(version.file_path).write_bytes(b"not a model")
    response = post(secret, {"instances": [[1, 2]]})
    assert response.status_code == 503
    assert "the deployed demo v1 cannot be loaded" in response.json()["error"]
    assert "redeploy or roll back" in response.json()["error"]


def test_an_unknown_model_is_a_404(deployed, secret):
    response = post(secret, {"instances": [[1, 2]]}, url="/api/models/nope/predict")
    assert response.status_code == 404 and response.json() == {"error": "there is no model named 'nope'"}


def test_a_model_with_nothing_deployed_is_a_409(model_demo, secret):
    train_version()
    response = post(secret, {"instances": [[1, 2]]})
    assert response.status_code == 409 and "no version of 'demo' is deployed" in response.json()["error"]


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer mlops_wrong", "Token {secret}", "Basic b3R0bzpw"])
def test_no_or_a_bad_token_is_a_401(deployed, secret, header):
    headers = {} if header is None else {"HTTP_AUTHORIZATION": header.format(secret=secret)}
    response = post(None, {"instances": [[1, 2]]}, **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "API token" in response.json()["error"]


def test_a_revoked_token_or_an_inactive_user_is_a_401(deployed, ops):
    token, secret = tokens.create(ops, "soon revoked")
    assert post(secret, {"instances": [[1, 2]]}).status_code == 200
    tokens.revoke(token, ops)
    assert post(secret, {"instances": [[1, 2]]}).status_code == 401
    _token, other = tokens.create(ops, "other")
    ops.is_active = False
    ops.save()
    assert post(other, {"instances": [[1, 2]]}).status_code == 401


def test_401_comes_before_anything_about_the_model(model_demo):
    assert post(None, {"instances": [[1, 2]]}, url="/api/models/nope/predict").status_code == 401


def test_get_is_a_405_in_json(deployed, secret):
    response = Client().get(URL, HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert "use POST" in response.json()["error"]


def test_tokens_are_stored_only_as_a_digest_and_record_their_use(deployed, ops):
    token, secret = tokens.create(ops, "billing")
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert secret not in json.dumps(row, default=str)
    assert row["digest"] == tokens.digest(secret) and secret.startswith(row["prefix"])
    assert row["last_used_at"] is None
    post(secret, {"instances": [[1, 2]]})
    first_use = ApiToken.objects.get(pk=token.pk).last_used_at
    assert first_use is not None
    # Within a minute a request does not write it again (serving is not a write per request).
    assert post(secret, {"instances": [[1, 2]]}).status_code == 200
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first_use
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first_use - datetime.timedelta(minutes=2))
    post(secret, {"instances": [[1, 2]]})
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first_use


# --- the tokens page ---------------------------------------------------------------------


def test_the_tokens_page_shows_a_new_token_once(client, ops):
    client.force_login(ops)
    response = client.post("/tokens/", {"name": "billing service", "scopes": ["predict"], "expires": "90"})
    assert response.status_code == 200
    token = ApiToken.objects.get(user=ops)
    secret = response.context["secret"]
    assert tokens.digest(secret) == token.digest
    assert secret in response.content.decode() and "cannot be shown again" in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    again = client.get("/tokens/").content.decode()
    assert secret not in again and "billing service" in again and token.prefix in again
    assert AuditEvent.objects.filter(action="token_create", username="otto").count() == 1


def test_a_token_needs_a_name(client, ops):
    client.force_login(ops)
    response = client.post("/tokens/", {"name": "  "})
    assert response.status_code == 422 and "Give the token a name" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_a_user_revokes_their_own_token_but_not_anyone_elses(client, ops):
    mine, secret = tokens.create(ops, "mine")
    theirs, _ = tokens.create(make_user("sam", "stakeholders"), "theirs")
    client.force_login(ops)
    assert client.post(f"/tokens/{theirs.pk}/revoke/").status_code == 404
    assert ApiToken.objects.get(pk=theirs.pk).revoked_at is None
    response = client.post(f"/tokens/{mine.pk}/revoke/", follow=True)
    assert "is revoked" in response.content.decode()
    assert ApiToken.objects.get(pk=mine.pk).revoked_at is not None
    assert AuditEvent.objects.filter(action="token_revoke").count() == 1


# --- switching under load, through gunicorn ----------------------------------------------


def call(base, secret, instances):
    request = urllib.request.Request(
        base + URL, data=json.dumps({"instances": instances}).encode(), method="POST",
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.mark.worker
def test_every_web_process_switches_at_once_and_no_request_sees_a_mix(model_demo, ops, web_server):
    secret = tokens.create(ops, "load")[1]
    constants = {}
    for constant in (10, 20):
        version = train_version(constant=constant)
        constants[version.version] = constant
    versions = {v.version: v for v in ModelVersion.objects.filter(model__name="demo")}
    deployments.deploy(versions[1], ops, "start")
    wait_for(lambda: call(web_server, secret, [[0, 0]])["version"] == 1, message="the server to answer")

    stop = threading.Event()
    answers, failures = [], []
    rows = [[float(i), float(-i)] for i in range(20)]

    def hammer():
        while not stop.is_set():
            try:
                answers.append(call(web_server, secret, rows))
            except (OSError, urllib.error.URLError) as exc:
                failures.append(exc)

    clients = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        for i in range(10):
            target = 2 if i % 2 == 0 else 1
            deployments.deploy(versions[target], ops, f"switch {i}")
            # At once, in every process: each of the next requests (spread over both
            # gunicorn workers) answers from the new version.
            for _ in range(6):
                assert call(web_server, secret, [[0, 0]])["version"] == target
            wait_for(lambda: len(answers) > 5 * (i + 1), message="requests under load")
    finally:
        stop.set()
        for thread in clients:
            thread.join()
    assert failures == []
    assert len(answers) > 50
    seen = {answer["version"] for answer in answers}
    assert seen == {1, 2}
    for answer in answers:
        assert answer["predictions"] == [constants[answer["version"]]] * len(rows), answer
