"""Hardened by default: login lockout, production security settings, the Content-Security-
Policy, no caching of pages, idle sessions, the admin that cannot delete history, and files
only the service's user can read."""

import os
import secrets
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from app.mlmodels import deployments
from app.models import AuditAction, AuditEvent, Deployment, RegisteredModel
from app.runs import engine
from app.web.security import ACTIVE_AT
from tests.conftest import PASSWORD, make_user, train_version

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db


def log_in(client, username, password, url="/login/"):
    return client.post(url, {"username": username, "password": password})


# --- lockout -----------------------------------------------------------------------------


def test_ten_failed_logins_in_a_row_lock_the_login_until_it_is_unlocked(client, operator, capsys):
    for _ in range(9):
        assert log_in(client, operator.username, "wrong").status_code == 200  # the form again, with its error
    locked = log_in(client, operator.username, "wrong")  # the tenth

    assert locked.status_code == 429
    assert f"10 failed logins in a row for <strong>{operator.username}</strong>" in locked.content.decode()
    refused = log_in(client, operator.username, PASSWORD)  # the right password no longer helps
    assert refused.status_code == 429 and "_auth_user_id" not in client.session
    assert client.get("/runs/").status_code == 302
    event = AuditEvent.objects.get(action=AuditAction.LOGIN_LOCKED)
    assert (event.username, event.user, event.details["address"]) == (operator.username, None, "127.0.0.1")

    call_command("unlock_login", operator.username)

    assert f"Unlocked {operator.username}" in capsys.readouterr().out
    assert log_in(client, operator.username, PASSWORD).status_code == 302
    assert client.get("/runs/").status_code == 200
    assert AuditEvent.objects.filter(action=AuditAction.LOGIN_UNLOCK, username=operator.username).exists()


def test_a_successful_login_starts_the_count_again(client, operator):
    for _ in range(2):
        for _ in range(9):
            log_in(client, operator.username, "wrong")
        assert log_in(client, operator.username, PASSWORD).status_code == 302
        client.post("/logout/")

    assert not AuditEvent.objects.filter(action=AuditAction.LOGIN_LOCKED).exists()


def test_the_admin_login_is_locked_too(client, admin):
    for _ in range(10):
        client.post("/admin/login/", {"username": admin.username, "password": "wrong", "next": "/admin/"})

    response = client.post("/admin/login/", {"username": admin.username, "password": PASSWORD, "next": "/admin/"})

    assert response.status_code == 429
    assert client.get("/admin/").status_code == 302


def test_the_lock_is_per_username(client, operator, stakeholder):
    for _ in range(10):
        log_in(client, operator.username, "wrong")

    assert log_in(client, stakeholder.username, PASSWORD).status_code == 302


# --- production settings ------------------------------------------------------------------


def production_env(tmp_path, **extra):
    # The test run's own variables (HTTPS=0, DJANGO_ALLOW_ASYNC_UNSAFE, the test servers) left out.
    unset = {"DEBUG", "HTTPS", "SECURE_COOKIES", "DJANGO_ALLOW_ASYNC_UNSAFE", "TEST_DATABASE_URL", "TEST_REDIS_URL"}
    env = {key: value for key, value in os.environ.items() if key not in unset}
    env.update(
        DJANGO_SETTINGS_MODULE="app.settings", DATA_DIR=str(tmp_path / "data"), SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="mlops.example.com",
    )
    env.pop("DATABASE_URL", None)
    env.pop("HUEY_REDIS_URL", None)
    env.update(extra)
    return env


SHOW = (
    "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, "
    "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)"
)


@pytest.mark.django_db(transaction=False)
def test_check_deploy_is_clean_with_the_production_defaults(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=production_env(tmp_path), capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    ("extra", "expected"),
    [({}, "True 31536000 True True"), ({"DEBUG": "1"}, "False 0 False False"), ({"HTTPS": "0"}, "False 0 False False")],
)
def test_https_settings_are_on_unless_debug_or_turned_off(tmp_path, extra, expected):
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", SHOW],
        cwd=ROOT, env=production_env(tmp_path, **extra), capture_output=True, text=True, timeout=120,
    )

    assert result.stdout.strip() == expected, result.stderr


def test_files_in_a_new_data_dir_are_for_the_services_user_only(tmp_path):
    env = production_env(tmp_path)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True,
                   timeout=120)

    data = tmp_path / "data"
    created = [data, *data.rglob("*")]
    assert data / "db.sqlite3" in created
    for path in created:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path} is {oct(path.stat().st_mode)}"


# --- headers ------------------------------------------------------------------------------


@pytest.fixture
def world(operator, admin):
    """A finished run and a live model, so that every kind of page has something to show."""
    run = engine.run_inline(*engine.start_run("fanout_demo", {"rows": "5"}))
    return run


def page_urls(run):
    step = run.step_runs.first()
    return [
        "/dashboard/", "/results/", "/pipelines/", "/pipelines/fanout_demo/", "/runs/", f"/runs/{run.pk}/",
        f"/runs/{run.pk}/steps/{step.step_name}/", f"/runs/{run.pk}/retry/", "/models/", "/audit/", "/tokens/",
        "/pipelines/fanout_demo/parameter-sets/", "/admin/", "/admin/app/run/", f"/admin/app/run/{run.pk}/change/",
    ]


def test_every_page_has_the_content_security_policy_and_is_not_cached(client, admin, world):
    client.force_login(admin)
    login_page = client.__class__().get("/login/")

    for url, response in [("/login/", login_page)] + [(url, client.get(url)) for url in page_urls(world)]:
        assert response.status_code == 200, url
        policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
        assert policy["script-src"] == "'self'" and policy["default-src"] == "'self'", url
        assert policy["frame-ancestors"] == "'none'" and "unsafe" not in policy["style-src"], url
        assert "no-store" in response["Cache-Control"], url


def test_api_and_errors_have_the_policy_too(client, operator):
    client.force_login(operator)
    for response in (client.get("/runs/999999/"), client.post("/api/models/nope/predict/", {}, content_type="application/json")):
        assert response.status_code in (401, 404)
        assert "script-src 'self'" in response["Content-Security-Policy"]


# --- sessions -----------------------------------------------------------------------------


def age_session(client, seconds):
    session = client.session
    session[ACTIVE_AT] = time.time() - seconds
    session.save()


def test_a_session_ends_after_its_idle_time(client, operator, settings):
    settings.SESSION_IDLE_MINUTES = 30
    client.force_login(operator)
    assert client.get("/runs/").status_code == 200

    age_session(client, 29 * 60)
    assert client.get("/runs/").status_code == 200  # active again: the clock starts over
    age_session(client, 31 * 60)
    response = client.get("/runs/")

    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert client.get("/pipelines/").status_code == 302  # logged out, not only refused once


def test_a_page_polling_on_its_own_does_not_keep_the_session_alive(client, operator, settings):
    settings.SESSION_IDLE_MINUTES = 30
    client.force_login(operator)
    client.get("/runs/")
    age_session(client, 29 * 60)
    polls = {"HTTP_HX_REQUEST": "true", "HTTP_X_POLL": "1", "HTTP_HX_CURRENT_URL": "http://testserver/runs/?status=failed"}

    aged = client.session[ACTIVE_AT]
    assert client.get("/runs/", **polls).status_code in (200, 286)  # 286: htmx's "stop polling"
    assert client.session[ACTIVE_AT] == aged  # a poll is not activity
    age_session(client, 31 * 60)
    response = client.get("/runs/", **polls)

    # the poll does not paste the login page into the run list: the browser goes to it
    assert response.status_code == 204
    assert response["HX-Redirect"] == "/login/?next=%2Fruns%2F%3Fstatus%3Dfailed"


def test_an_htmx_request_without_a_session_sends_the_browser_to_the_login_page(client):
    response = client.get("/runs/4/", HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="http://testserver/runs/4/")

    assert (response.status_code, response["HX-Redirect"]) == (204, "/login/?next=%2Fruns%2F4%2F")


# --- the admin ----------------------------------------------------------------------------


def test_the_admin_cannot_delete_history(client, admin, model_demo):
    version = train_version()
    deployment = deployments.deploy(version, admin, "first")
    client.force_login(admin)

    for model, pk in [("deployment", deployment.pk), ("modelversion", version.pk), ("registeredmodel", version.model_id),
                      ("run", version.run_id), ("steprun", version.step_run_id), ("auditevent", AuditEvent.objects.first().pk)]:
        url = reverse(f"admin:app_{model}_delete", args=[pk])
        assert client.post(url, {"post": "yes"}).status_code == 403, model

    assert Deployment.objects.filter(pk=deployment.pk).exists()
    assert RegisteredModel.objects.get(pk=version.model_id).live_id == deployment.pk


def test_a_change_in_the_admin_is_in_the_audit_trail(client, admin, model_demo):
    version = train_version()
    client.force_login(admin)
    url = reverse("admin:app_registeredmodel_change", args=[version.model_id])

    response = client.post(url, {"headline_metric": "loss", **inline_management()})

    assert response.status_code == 302, response.content.decode()[:2000]
    event = AuditEvent.objects.get(action=AuditAction.ADMIN_CHANGE)
    assert (event.username, event.target_type, event.target_label) == (admin.username, "registered model", "demo")
    assert event.details == {"change": "Changed Headline metric."}

    make_user("someone")
    assert not AuditEvent.objects.filter(action=AuditAction.ADMIN_ADD).exists()  # only the admin's own changes


def inline_management():
    """The management forms of RegisteredModelAdmin's two read-only inlines."""
    data = {}
    for prefix in ("versions", "deployments"):
        data.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0", f"{prefix}-MIN_NUM_FORMS": "0",
                     f"{prefix}-MAX_NUM_FORMS": "1000"})
    return data
