"""Every URL × (anonymous, stakeholder, operator, admin) × (GET, POST): anonymous users go to
the login page, a role the view's policy leaves out gets 403 and changes nothing, and a method
the view does not take gets 405 whoever asks."""

import pytest
from django.urls import URLPattern, get_resolver
from django.utils import timezone

from app.api import tokens
from app.mlmodels import deployments
from app.models import (
    AlertChannel,
    AlertRule,
    ApiToken,
    AuditEvent,
    Backfill,
    Delivery,
    Deployment,
    Incident,
    ParameterSet,
    ParameterSetRevision,
    PipelineState,
    Pool,
    Promotion,
    Run,
    Schedule,
    StepRun,
)
from app.runs import engine, paramsets
from app.web.access import POLICY_ATTR
from tests.conftest import make_user, train_version

pytestmark = pytest.mark.django_db


def app_patterns():
    """(route, view) of every URL the app itself serves, the API's included (the admin has
    its own rules)."""
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLPattern):
            yield str(entry.pattern), entry.callback
        elif str(entry.pattern) == "api/":
            for api_entry in entry.url_patterns:
                yield "api/" + str(api_entry.pattern).replace("^(?P<rest>.*)$", "no-such-endpoint"), api_entry.callback


def fill(route, world):
    route = route.replace("<name>", "<str:name>").replace("<step>", "<str:step>")  # django-ninja's converters
    name = "demo" if route.startswith(("models/", "results/models/", "api/models/")) else "fanout_demo"
    return "/" + (
        route.replace("<str:name>", name).replace("<str:step>", "load")
        .replace("<int:run_id>", str(world["run"].pk)).replace("<int:set_id>", str(world["set"].pk))
        .replace("<int:number>", "1").replace("<int:token_id>", str(world["token"].pk))
        .replace("<int:schedule_id>", str(world["schedule"].pk)).replace("<int:backfill_id>", str(world["backfill"].pk))
        .replace("<int:channel_id>", str(world["channel"].pk)).replace("<int:rule_id>", str(world["rule"].pk))
        .replace("<int:incident_id>", str(world["incident"].pk))
    )


def state():
    return (
        Run.objects.count(), StepRun.objects.exclude(status="queued").count(), ParameterSet.objects.count(),
        ParameterSetRevision.objects.count(), AuditEvent.objects.count(),
        list(Run.objects.values_list("status", "cancel_requested_at")),
        list(ParameterSet.objects.values_list("is_default", "archived_at")),
        Deployment.objects.count(), Promotion.objects.count(),
        list(ApiToken.objects.values_list("pk", "revoked_at")),
        list(Schedule.objects.values_list("pk", "enabled", "cron")), list(PipelineState.objects.values_list("paused")),
        list(Backfill.objects.values_list("pk", "state")),
        list(AlertChannel.objects.values_list("pk", "target")), list(AlertRule.objects.values_list("pk", "condition")),
        list(Incident.objects.values_list("pk", "acknowledged_at")), Delivery.objects.count(),
        list(Pool.objects.values_list("name", "size", "description")),
    )


@pytest.fixture
def world(model_demo):
    operator = make_user("oscar", "operators")
    run = engine.run_inline(*engine.start_run("fanout_demo", {"rows": "5"}))
    pset = paramsets.create("fanout_demo", "s", {"rows": 5, "seed": 7, "pause": 0.0}, operator)
    first, second = train_version(), train_version()
    deployments.deploy(first, operator, "one")
    deployments.deploy(second, operator, "two")
    schedule = Schedule.objects.create(pipeline_name="fanout_demo", name="matrix", cron="0 * * * *")
    channel = AlertChannel.objects.create(name="matrix", kind="email", target="ops@example.com")
    rule = AlertRule.objects.create(name="matrix", condition="no_worker")
    return {
        "anonymous": None,
        "stakeholder": make_user("stella", "stakeholders"),
        "operator": operator,
        "admin": make_user("adam", superuser=True),
        "run": run,
        "set": pset,
        "token": tokens.create(operator, "matrix")[0],
        "schedule": schedule,
        "backfill": Backfill.objects.create(schedule=schedule, start=timezone.now(), end=timezone.now()),
        "channel": channel,
        "rule": rule,
        "incident": Incident.objects.create(rule=rule, subject="x", summary="x", opened_at=timezone.now()),
    }


def test_it_applies_each_views_policy_to_every_role_and_method(client, world):
    checked = 0
    for route, view in app_patterns():
        policy = getattr(view, POLICY_ATTR)
        url = fill(route, world)
        allowed = {}
        for method in ("get", "post"):
            client.force_login(world["admin"])
            allowed[method] = getattr(client, method)(url).status_code != 405
            client.logout()
        for role in ("anonymous", "stakeholder", "operator", "admin"):
            for method in ("get", "post"):
                client.logout()
                if world[role] is not None:
                    client.force_login(world[role])
                before = state()
                response = getattr(client, method)(url)
                where = (role, method.upper(), url)
                if policy == "public":
                    continue
                if policy == "metrics":
                    # Neither a session nor the login page: its own token (404 while unset).
                    assert response.status_code in (401, 404, 405), where
                    continue
                if policy == "token":
                    # Sessions do not authenticate the API, whoever is signed in; a wrong
                    # method is a 405 before that.
                    expected = 401 if allowed[method] else 405
                    assert response.status_code == expected and response.json()["error"], where
                    assert state() == before, where
                elif role == "anonymous":
                    assert response.status_code == 302 and response["Location"].startswith("/login/"), where
                    assert state() == before, where
                elif not allowed[method]:
                    assert response.status_code == 405, where
                elif policy == "operator" and role == "stakeholder":
                    assert response.status_code == 403, where
                    assert state() == before, where
                else:
                    assert response.status_code not in (403, 405, 500), where
                checked += 1
    assert checked > 100  # every app URL was walked
