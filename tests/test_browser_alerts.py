"""An operator in a real browser sets up an alert: a webhook channel (its test message
arrives), a rule for failed runs; then a run fails on a real worker and the alert arrives,
Home and the incidents page show it open, and the next good run closes it with a recovery
message."""

import pytest

from app.models import Incident
from tests.conftest import wait_for
from tests.test_alerts import Hook
from tests.test_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def hook():
    made = Hook()
    yield made
    made.server.shutdown()


def run_flaky(page, base, fail: bool):
    page.goto(f"{base}/pipelines/flaky_demo/")
    page.check(f"input[name=fail][value={'true' if fail else 'false'}]")
    page.click("text=Run flaky_demo")
    page.wait_for_url(f"{base}/runs/*/")
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def test_a_failure_alert_arrives_shows_as_an_incident_and_clears_with_the_next_good_run(
    live_server, start_worker, operator, page, hook,
):
    base = live_server.url
    page.goto(f"{base}/login/")
    log_in(page, operator)

    # The channel, and its test message.
    page.goto(f"{base}/alerts/")
    page.click("text=+ New channel")
    page.fill("#id_name", "ops webhook")
    page.select_option("#id_kind", "apprise")
    page.fill("#id_target", hook.url)
    page.click("button[type=submit].primary")
    page.wait_for_url(f"{base}/alerts/")
    page.click("text=Send a test")
    assert "A test message went to “ops webhook”" in page.inner_text(".messages")
    assert len(hook.received) == 1 and "test" in hook.titles()[0].lower()

    # The rule: tell the channel when a flaky_demo run fails.
    page.click("text=+ New rule")
    page.fill("#id_name", "flaky fails")
    page.select_option("#id_condition", "run_failed")
    page.select_option("#id_pipeline_name", "flaky_demo")
    page.check("text=ops webhook")
    page.click("button[type=submit].primary")
    page.wait_for_url(f"{base}/alerts/")
    assert "flaky fails" in page.inner_text("main")

    # A run fails on a real worker: one message arrives, and the incident is open everywhere.
    start_worker(ALERTS_SECONDS="0.3", WORKER_BEAT_SECONDS="0.3")
    failed = run_flaky(page, base, fail=True)
    page.locator("text=Failed").first.wait_for(timeout=60_000)
    wait_for(lambda: len(hook.received) == 2, timeout=60, message="the alert to arrive")
    alert = hook.received[1]
    assert "flaky_demo" in alert["title"] and f"#{failed}" in alert["title"]
    assert "negative amount" in alert["message"] and f"/runs/{failed}/" in alert["message"]

    page.goto(f"{base}/")
    assert f"flaky_demo: run #{failed} failed" in page.inner_text("main")
    page.goto(f"{base}/incidents/?state=open")
    page.click(f"text=flaky_demo: run #{failed} failed")
    assert "sent" in page.inner_text("main") and "ops webhook" in page.inner_text("main")

    # The next good run closes it: the recovery message arrives, Home no longer lists it.
    good = run_flaky(page, base, fail=False)
    page.locator("text=Succeeded").first.wait_for(timeout=60_000)
    wait_for(lambda: len(hook.received) == 3, timeout=60, message="the recovery message")
    assert "flaky_demo" in hook.received[2]["title"] and "recovered" in (hook.received[2]["title"] + hook.received[2]["message"]).lower()
    incident = Incident.objects.get()
    assert incident.closed_at is not None
    page.goto(f"{base}/incidents/?state=closed")
    assert f"flaky_demo: run #{failed} failed" in page.inner_text("main")
    page.goto(f"{base}/")
    assert f"run #{failed} failed" not in page.inner_text("main")
    assert good > failed
