"""An operator in a real browser sees a failure alert arrive and clear: a chat channel (its
test message arrives) and a rule for failed runs of flaky_demo; a run started from the
pipeline page fails on a real worker, one alert reaches the chat service, Home and the
incidents page show the incident open and the message sent; the next good run closes it
with a recovery message and Home no longer lists it.

The chat service is an HTTP server on loopback (tests.test_alerts.Hook, through Apprise's
json:// target). The worker is a real run_huey process, so the pipeline is flaky_demo of the
suite's own pipelines (tests.pipelines), which fails when its `fail` parameter says so: a
pipeline `define`d in the test process would not exist in the worker's. The web is
pytest-django's live server, as in the other browser tests: it serves the static files
(htmx, so the run page updates itself), which the gunicorn of `web_server` does not."""

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import wait_for
from tests.test_alerts import Hook
from tests.test_browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def hook():
    made = Hook()
    yield made
    made.server.shutdown()


def start_flaky_run(page, base, fail: bool) -> int:
    """Start flaky_demo from its page with `fail` set; the new run's number, once its page
    shows it finished."""
    page.goto(f"{base}/pipelines/flaky_demo/")
    page.check(f"input[name=fail][value={'true' if fail else 'false'}]")
    page.get_by_role("button", name="Run flaky_demo").click()
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    expect(page.locator("#run-status")).to_have_text("failed" if fail else "succeeded", timeout=60_000)
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def wait_until_sent(page, incident_url, event):
    """Reload the incident's page until its `event` message to the channel shows as sent (the
    chat service has it a moment before the worker records that it went)."""
    told = page.locator("section", has=page.get_by_role("heading", name="Who was told"))
    row = told.locator("tbody tr").filter(has=page.locator("td:first-child", has_text=re.compile(f"^{event}$")))

    def shown_sent():
        page.goto(incident_url)
        return row.count() == 1 and row.locator(".badge").inner_text() == "sent"

    wait_for(shown_sent, timeout=30, interval=0.25, message=f"the {event} message to show as sent")
    return row


def test_a_failure_alert_arrives_shows_as_an_open_incident_and_clears_with_the_next_good_run(
    live_server, start_worker, operator, page, hook,
):
    base = live_server.url
    # Rules checked and messages sent every 0.3 s; the messages link to this server.
    start_worker(ALERTS_SECONDS="0.3", WORKER_BEAT_SECONDS="0.3", SITE_URL=base)
    page.goto(f"{base}/alerts/")
    log_in(page, operator)
    page.wait_for_url(f"{base}/alerts/")

    # The channel, and its test message.
    page.click("text=+ New channel")
    page.fill("#id_name", "ops chat")
    page.select_option("#id_kind", "apprise")
    page.fill("#id_target", hook.url)
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(f"{base}/alerts/")
    expect(page.locator(".messages")).to_have_text("Channel “ops chat” created.")
    channel = page.locator("#channels tbody tr", has_text="ops chat")
    channel.get_by_role("button", name="Send a test").click()
    expect(page.locator(".messages")).to_have_text("A test message went to “ops chat”.")
    expect(channel).to_contain_text("test · sent")
    assert hook.titles() == ["[mlops] test alert"]

    # The rule: tell the channel when flaky_demo's latest run failed.
    page.click("text=+ New rule")
    page.fill("#id_name", "flaky_demo fails")
    page.select_option("#id_condition", "run_failed")
    page.select_option("#id_pipeline_name", "flaky_demo")
    page.get_by_label("ops chat").check()
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(f"{base}/alerts/")
    expect(page.locator(".messages")).to_have_text("Rule “flaky_demo fails” created.")
    rule = page.locator("#rules tbody tr", has_text="flaky_demo fails")
    expect(rule).to_contain_text("a pipeline's latest run failed")
    expect(rule).to_contain_text("ops chat")

    # A run fails on the worker: one alert arrives, naming the pipeline, the run and the error.
    failed = start_flaky_run(page, base, fail=True)
    summary = f"flaky_demo: run #{failed} failed"
    wait_for(lambda: len(hook.received) >= 2, timeout=30, message="the alert to reach the chat service")
    alert = hook.received[1]
    assert alert["title"] == f"[mlops] alert: {summary}"
    assert "Last error: validate: ValueError: 1 record(s) have a negative amount: ids [5]" in alert["message"]
    assert f"Look: {base}/runs/{failed}/" in alert["message"]
    incident_url = re.search(r"^Incident: (\S+)$", alert["message"], re.MULTILINE)[1]

    page.goto(f"{base}/")
    expect(page.locator("#open-incidents")).to_contain_text(summary)

    page.goto(f"{base}/incidents/")
    listed = page.locator("tbody tr", has_text=summary)
    expect(listed.locator(".badge")).to_have_text("open")
    expect(listed).to_contain_text("flaky_demo fails")
    listed.get_by_role("link", name=summary).click()
    assert page.url == incident_url  # the link in the message is the page the list leads to
    expect(page.locator(".run-head .badge")).to_have_text("open")
    opened = wait_until_sent(page, incident_url, "opened")
    expect(opened).to_contain_text("ops chat")
    expect(page.locator("main")).to_contain_text("validate: ValueError: 1 record(s) have a negative amount")

    # The next run succeeds: the incident closes with a recovery message, Home no longer lists it.
    good = start_flaky_run(page, base, fail=False)
    assert good > failed
    wait_for(lambda: len(hook.received) >= 3, timeout=30, message="the recovery message")
    recovery = hook.received[2]
    assert recovery["title"] == f"[mlops] recovered: {summary}"
    assert f"It was: {summary}" in recovery["message"] and f"Incident: {incident_url}" in recovery["message"]

    recovered = wait_until_sent(page, incident_url, "recovered")
    expect(recovered).to_contain_text("ops chat")
    expect(page.locator(".run-head .badge")).to_have_text("recovered")
    expect(page.get_by_role("button", name="Acknowledge (stop reminders)")).to_have_count(0)

    page.goto(f"{base}/incidents/")
    listed = page.locator("tbody tr", has_text=summary)
    expect(listed.locator(".badge")).to_have_text("recovered")  # closed, and why
    expect(listed.locator("td").nth(3)).to_have_text(re.compile(r"^recovered\s+\d{4}-\d\d-\d\d \d\d:\d\d$"))
    page.goto(f"{base}/incidents/?state=open")
    expect(page.locator("main")).to_contain_text("No incidents open.")

    page.goto(f"{base}/")
    expect(page.locator("#open-incidents")).to_have_count(0)
    expect(page.locator("main")).not_to_contain_text(summary)
    # One message each: the test, the alert, the recovery; the failure did not repeat.
    assert hook.titles() == ["[mlops] test alert", f"[mlops] alert: {summary}", f"[mlops] recovered: {summary}"]
