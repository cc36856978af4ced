"""Every state-changing POST needs a CSRF token: without one it is refused and changes nothing."""

import pytest
from django.test import Client

from app.models import AuditEvent, ParameterSet, Pool, Run
from app.runs import engine, paramsets

pytestmark = pytest.mark.django_db


@pytest.fixture
def csrf_client(operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    return client


@pytest.mark.parametrize("path", [
    "/pipelines/fanout_demo/run/",
    "/pipelines/fanout_demo/parameter-sets/new/",
    "/parameter-sets/{set}/edit/",
    "/parameter-sets/{set}/copy/",
    "/parameter-sets/{set}/archive/",
    "/parameter-sets/{set}/default/",
    "/parameter-sets/{set}/run/",
    "/runs/{failed}/retry/start/",
    "/runs/{failed}/rerun/",
    "/runs/{queued}/cancel/",
    "/runs/{queued}/note/",
    "/pools/gpu/",
])
def test_it_refuses_a_post_without_a_csrf_token(csrf_client, operator, path):
    pset = paramsets.create("fanout_demo", "s", {"rows": 5, "seed": 7, "pause": 0.0}, operator)
    failed = engine.run_inline(*engine.start_run("flaky_demo", {}))
    queued, _ready = engine.start_run("fanout_demo", {})
    Pool.objects.create(name="gpu", size=1)
    before = (Run.objects.count(), ParameterSet.objects.count(), AuditEvent.objects.count())

    response = csrf_client.post(path.format(set=pset.pk, failed=failed.pk, queued=queued.pk), {"name": "x", "rows": "9"})

    assert response.status_code == 403
    assert (Run.objects.count(), ParameterSet.objects.count(), AuditEvent.objects.count()) == before
    queued.refresh_from_db()
    assert queued.cancel_requested_at is None and pset.revisions.count() == 1
    assert Pool.objects.get(name="gpu").size == 1
