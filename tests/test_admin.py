"""The Django admin: every model is there; history is read-only; a parameter set edited there
goes through the same validation and revisions as the operator form."""

import json

import pytest

from app import engine, paramsets
from app.models import AuditEvent, Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin)
    return client


@pytest.mark.parametrize("model", [
    "run", "steprun", "stepattempt", "metric", "pipelinesnapshot", "parameterset", "parametersetrevision",
    "auditevent", "workerheartbeat",
])
def test_it_lists_every_model(admin_client, model):
    engine.run_inline(*engine.start_run("flaky_demo", {}))

    assert admin_client.get(f"/admin/app/{model}/").status_code == 200


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
