"""API tokens' scopes and expiry, chosen on the tokens page: what each role may give a token,
when it stops working, and what the page and the audit trail say about it."""

import datetime

import pytest
from django.utils import timezone

from app.api import tokens
from app.models import ApiToken, AuditEvent
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def create(client, **data):
    return client.post("/tokens/", {"name": "notebook", "scopes": ["predict"], "expires": "90"} | data)


def test_an_operator_gives_a_token_runs_scopes_and_an_expiry(operator_client, operator):
    page = operator_client.get("/tokens/").content.decode()
    assert 'value="runs:write"' in page and 'value="runs:read"' in page
    response = create(operator_client, scopes=["runs:read", "runs:write"], expires="30")
    assert response.status_code == 200
    token = ApiToken.objects.get(user=operator)
    assert token.scope_list == ["runs:read", "runs:write"]
    assert abs(token.expires_at - (timezone.now() + datetime.timedelta(days=30))) < datetime.timedelta(minutes=1)
    assert "curl" in response.content.decode() and "/api/runs" in response.content.decode()
    event = AuditEvent.objects.get(action="token_create")
    assert event.details["scopes"] == "runs:read runs:write" and event.details["expires"]


def test_a_token_that_never_expires(operator_client, operator):
    create(operator_client, expires="never")
    assert ApiToken.objects.get(user=operator).expires_at is None


def test_a_stakeholder_is_offered_predict_only_and_cannot_post_more(stakeholder_client, stakeholder):
    page = stakeholder_client.get("/tokens/").content.decode()
    assert 'value="predict"' in page and 'value="runs:read"' not in page
    assert "needs an operator" in page
    response = create(stakeholder_client, scopes=["predict", "runs:write"])
    assert response.status_code == 422 and "not one of the available choices" in response.content.decode()
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("data, message", [
    ({"scopes": []}, "Choose at least one thing the token may do."),
    ({"expires": "7"}, "Select a valid choice"),
    ({"name": ""}, "Give the token a name"),
])
def test_a_bad_form_is_a_422_naming_the_field_and_creates_nothing(operator_client, data, message):
    response = create(operator_client, **data)
    assert response.status_code == 422 and message in response.content.decode()
    assert not ApiToken.objects.exists()


def test_the_page_shows_each_tokens_scopes_and_expiry(operator_client, operator):
    tokens.create(operator, "old", scopes=["predict"], expires_at=timezone.now() + datetime.timedelta(days=1))
    ApiToken.objects.filter(name="old").update(expires_at=timezone.now() - datetime.timedelta(days=2))
    tokens.create(operator, "ci", scopes=["runs:read"])
    table = operator_client.get("/tokens/").content.decode()
    assert "expired" in table and "runs:read" in table


def test_create_refuses_what_the_form_would(db):
    sam = make_user("sam", "stakeholders")
    with pytest.raises(ValueError, match="not an operator"):
        tokens.create(sam, "x", scopes=["runs:read"])
    with pytest.raises(ValueError, match="at least one scope"):
        tokens.create(sam, "x", scopes=[])
    with pytest.raises(ValueError, match="must be in the future"):
        tokens.create(sam, "x", expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert not ApiToken.objects.exists()
