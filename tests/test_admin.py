"""The Django admin: every model is there; history is read-only; a parameter set edited there
goes through the same validation and revisions as the operator form."""

import json

import pytest
from django.apps import apps
from django.contrib.admin import site

from app.api import tokens
from app.mlmodels import deployments
from app.models import ApiToken, AuditEvent, Run
from app.runs import engine, paramsets
from tests.conftest import train_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    return client


@pytest.mark.parametrize("model", [
    "run", "steprun", "stepattempt", "metric", "pipelinesnapshot", "parameterset", "parametersetrevision",
    "auditevent", "workerheartbeat", "registeredmodel", "modelversion", "deployment", "promotion", "resulttable",
    "apitoken", "runtag", "pool",
])
def test_it_lists_every_model(admin_client, model, model_demo, admin):
    engine.run_inline(*engine.start_run("flaky_demo", {}))
    version = train_version()
    deployments.deploy(version, admin, "for the admin")
    tokens.create(admin, "admin token")

    assert admin_client.get(f"/admin/app/{model}/").status_code == 200


def test_every_app_model_is_registered():
    from_app = {m for m in apps.get_app_config("app").get_models()}
    assert from_app <= set(site._registry)


def test_an_admin_creates_a_token_for_a_user_shown_once(admin_client, operator):
    response = admin_client.post(
        "/admin/app/apitoken/add/", {"user": operator.pk, "name": "for billing", "scopes": ["predict", "runs:read"]},
        follow=True,
    )
    token = ApiToken.objects.get(user=operator)
    shown = [str(m) for m in response.context["messages"]]
    secret = next(word for m in shown for word in m.split() if word.startswith("mlops_"))
    assert tokens.check(f"Bearer {secret}", "runs:read").user == operator
    assert token.name == "for billing" and token.scope_list == ["predict", "runs:read"] and token.expires_at is None
    assert AuditEvent.objects.filter(action="token_create", username="ada").exists()


def test_an_admin_cannot_give_a_stakeholders_token_the_runs_scopes(admin_client, stakeholder):
    response = admin_client.post(
        "/admin/app/apitoken/add/", {"user": stakeholder.pk, "name": "for billing", "scopes": ["runs:write"]},
    )
    assert response.status_code == 200 and "is not an operator" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_an_admin_revokes_anyones_token(admin_client, operator):
    token, secret = tokens.create(operator, "theirs")
    admin_client.post("/admin/app/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    with pytest.raises(tokens.Refused, match="revoked"):
        tokens.check(f"Bearer {secret}", "predict")
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None


def test_deploys_cannot_be_made_in_the_admin(admin_client, model_demo, admin):
    version = train_version()
    model = version.model
    page = admin_client.get(f"/admin/app/registeredmodel/{model.pk}/change/").content.decode()
    assert 'name="headline_metric"' in page and 'name="live"' not in page
    assert admin_client.post("/admin/app/deployment/add/", {}).status_code == 403
    assert admin_client.post("/admin/app/modelversion/add/", {}).status_code == 403


def test_it_keeps_runs_read_only(admin_client):
    run = engine.run_inline(*engine.start_run("fanout_demo", {"rows": "5"}))

    response = admin_client.post(f"/admin/app/run/{run.pk}/change/", {"status": "failed"})

    assert response.status_code == 403 and Run.objects.get().status == "succeeded"


def test_it_saves_an_admin_edit_of_a_parameter_set_as_a_new_revision(admin_client, admin, operator):
    pset = paramsets.create("fanout_demo", "s", {"rows": 5, "seed": 7, "pause": 0.0}, operator)

    response = admin_client.post(
        f"/admin/app/parameterset/{pset.pk}/change/",
        {"values": json.dumps({"rows": "50"}), "note": "from the admin", "revisions-TOTAL_FORMS": "1",
         "revisions-INITIAL_FORMS": "1", "revisions-MIN_NUM_FORMS": "0", "revisions-MAX_NUM_FORMS": "1000",
         "revisions-0-id": str(pset.latest.pk), "revisions-0-parameter_set": str(pset.pk)},
    )

    assert response.status_code == 302
    assert (pset.latest.number, pset.latest.values, pset.latest.created_by) == (2, {"rows": 50, "seed": 7, "pause": 0.0}, admin)
    assert AuditEvent.objects.filter(action="paramset_edit", user=admin).exists()


def test_it_refuses_admin_values_the_declaration_rejects(admin_client, operator):
    pset = paramsets.create("fanout_demo", "s", {"rows": 5, "seed": 7, "pause": 0.0}, operator)

    response = admin_client.post(
        f"/admin/app/parameterset/{pset.pk}/change/",
        {"values": json.dumps({"rows": 0, "colour": "red"}), "revisions-TOTAL_FORMS": "0",
         "revisions-INITIAL_FORMS": "0", "revisions-MIN_NUM_FORMS": "0", "revisions-MAX_NUM_FORMS": "1000"},
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert "rows: 0 is below the minimum 1" in page and "colour: unknown parameter" in page
    assert pset.revisions.count() == 1
