"""An operator in a real browser: log in, start the fan-out example, watch it finish live."""

from pathlib import Path

import pytest

from app.models import Run
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def log_in(page, user):
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")


def test_it_shows_a_run_reaching_100_percent_without_reloading(live_server, worker, operator, page):
    page.goto(f"{live_server.url}/pipelines/fanout_demo/")
    assert "/login/" in page.url  # login first, then back to where the operator was going
    log_in(page, operator)
    page.wait_for_url(f"{live_server.url}/pipelines/fanout_demo/")

    page.fill("#id_rows", "5000")
    page.click("text=Run fanout_demo")
    page.wait_for_url(f"{live_server.url}/runs/*/")
    run = Run.objects.get()
    assert page.url.endswith(f"/runs/{run.pk}/")
    # A marker that a full page load would wipe out.
    page.evaluate("window.loadedOnce = true")

    progress = page.locator("#run-live .progress .label")
    progress.filter(has_text="5/5 · 100%").wait_for(timeout=60_000)
    page.locator("#run-status", has_text="succeeded").wait_for()
    for step in ("load", "total", "mean", "spread", "report"):
        node = page.locator(f"svg.dag #step-{step}")
        assert "st-succeeded" in node.get_attribute("class")
        assert "succeeded" in node.text_content()
    assert page.evaluate("window.loadedOnce") is True
    # the final poll brought in the logs without a reload
    assert "generated 5000 rows" in page.locator("#run-logs").text_content()

    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "run-succeeded.png", full_page=True)

    page.click("svg.dag #step-report a")
    page.wait_for_url(f"{live_server.url}/runs/{run.pk}/steps/report/")
    assert "Merge the three summaries" in page.inner_text("main")


def test_it_cancels_a_run_after_the_operator_confirms(live_server, worker, operator, page):
    page.goto(f"{live_server.url}/login/")
    log_in(page, operator)
    page.goto(f"{live_server.url}/pipelines/fanout_demo/")
    page.fill("#id_pause", "60")
    page.click("text=Run fanout_demo")
    page.wait_for_url(f"{live_server.url}/runs/*/")
    page.locator("svg.dag #step-total.st-running").wait_for(timeout=60_000)

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("text=Cancel run")

    page.locator("#run-status", has_text="cancelled").wait_for(timeout=30_000)
    assert "st-cancelled" in page.locator("svg.dag #step-report").get_attribute("class")
    assert f"by {operator.username}" in page.inner_text("main")
    assert Run.objects.get().status == "cancelled"
    page.screenshot(path=SCREENSHOTS / "run-cancelled.png", full_page=True)
