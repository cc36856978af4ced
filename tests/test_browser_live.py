"""A live run page in a real browser, when its updates stop coming and while they come: a lost
connection or a failing proxy is said in one line and the page keeps what it showed; an
opened log panel and the keyboard focus survive the polls."""

import pytest

from app.models import Metric, Run
from tests.conftest import wait_for
from tests.test_browser import SCREENSHOTS, log_in

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def start(page, live_server, operator, **params):
    page.goto(f"{live_server.url}/login/")
    log_in(page, operator)
    page.goto(f"{live_server.url}/pipelines/fanout_demo/")
    for name, value in params.items():
        page.fill(f"#id_{name}", str(value))
    page.click("text=Run fanout_demo")
    page.wait_for_url(f"{live_server.url}/runs/*/")
    return Run.objects.get()


def polls_done(page):
    return page.evaluate("window.polls || 0")


def count_polls(page):
    page.evaluate("window.polls = 0; document.addEventListener('htmx:afterRequest', () => window.polls++)")


def test_a_lost_connection_and_a_failing_proxy_are_said_and_cleared(live_server, worker, operator, page):
    run = start(page, live_server, operator, pause=60)
    page.locator("svg.dag #step-total.st-running").wait_for(timeout=60_000)
    notice = page.locator("#live-notice")
    assert notice.is_hidden()

    # The network drops every poll: the page keeps the run it showed and says why it stopped changing.
    page.route(f"**/runs/{run.pk}/", lambda route: route.abort() if route.request.headers.get("x-poll") == "1"
               else route.continue_())
    notice.filter(has_text="Connection to the server lost").wait_for(timeout=10_000)
    assert page.locator("#run-status").inner_text() == "running" and page.locator("#run-live h1").count() == 1
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "run-connection-lost.png")

    # A proxy in front of the site answers 502 (the site restarting): said, and nothing pasted in.
    page.unroute(f"**/runs/{run.pk}/")
    page.route(f"**/runs/{run.pk}/", lambda route: route.fulfill(status=502, body="<html><h1>Bad gateway</h1></html>")
               if route.request.headers.get("x-poll") == "1" else route.continue_())
    notice.filter(has_text="The server failed to answer (502)").wait_for(timeout=10_000)
    assert "Bad gateway" not in page.inner_text("body")

    # Back: the next poll clears the notice.
    page.unroute(f"**/runs/{run.pk}/")
    notice.wait_for(state="hidden", timeout=10_000)


def test_an_opened_log_panel_and_the_focus_survive_the_polls(live_server, worker, operator, page):
    run = start(page, live_server, operator, pause=12)
    page.locator("svg.dag #step-load.st-succeeded").wait_for(timeout=60_000)
    page.reload()  # the page now lists the finished step's log
    panel = page.locator("details#log-load")
    panel.locator("summary").click()
    assert panel.evaluate("p => p.open") is True

    cancel = page.locator(f'form[action="/runs/{run.pk}/cancel/"] button')
    cancel.focus()
    count_polls(page)
    wait_for(lambda: polls_done(page) >= 3, timeout=20, message="three polls")
    assert cancel.evaluate("b => b === document.activeElement") is True  # a poll does not throw the focus away
    # A poll that changed something swaps the summary around the button (out of band): still focused.
    load = run.step_runs.get(step_name="load")
    Metric.objects.create(run=run, step_run=load, attempt=load.attempt, name="probe", value=1.5)
    page.locator("#metrics", has_text="probe").wait_for(timeout=10_000)
    assert run.step_runs.filter(status="running").count() == 3  # the run still runs: the button is there
    assert cancel.evaluate("b => b === document.activeElement") is True

    page.locator("#run-status", has_text="succeeded").wait_for(timeout=60_000)
    # The final poll replaced the logs with every step's: the panel the operator opened is still open.
    assert page.locator("details#log-load").evaluate("p => p.open") is True
    assert page.locator("details#log-report").count() == 1


LONG = "a-parameter-set-name-with-no-spaces-at-all-" * 3  # 129 characters, no break


@pytest.mark.parametrize("width", [390, 1600])
def test_no_page_scrolls_sideways_even_with_long_unbroken_text(live_server, operator, page, width):
    from app.runs import engine, paramsets

    chosen = paramsets.create("fanout_demo", LONG[:100], {"rows": 5}, operator, note=LONG)
    run, ready = engine.start_run("fanout_demo", {"rows": 5}, parameter_revision=chosen.latest)
    engine.run_inline(run, ready)
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{live_server.url}/login/")
    log_in(page, operator)
    paths = ["/dashboard/", "/runs/", f"/runs/{run.pk}/", f"/runs/{run.pk}/steps/load/", "/pipelines/",
             "/pipelines/fanout_demo/", "/pipelines/fanout_demo/parameter-sets/", f"/parameter-sets/{chosen.pk}/", "/schedules/",
             "/alerts/", "/incidents/", "/models/", "/tokens/", "/audit/", "/results/", "/runs/abc/"]
    wide = {}
    for path in paths:
        page.goto(f"{live_server.url}{path}")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 0:
            wide[path] = overflow
    assert wide == {}, f"pages wider than {width} px (by how many px): {wide}"
    page.goto(f"{live_server.url}/parameter-sets/{chosen.pk}/")
    page.screenshot(path=SCREENSHOTS / f"long-text-{width}.png", full_page=True)
