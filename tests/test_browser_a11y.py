"""Every page type passes axe-core's automated accessibility check, on a phone (390 px) and a
wide screen (1600 px): no violation of impact critical or serious, and no aria-describedby,
aria-labelledby or <label for> naming an element that is not there (axe only asks a person to
review those). Each page as its role sees it: anonymous, operator, stakeholder, with the error
and confirmation pages. A keyboard skips to the content and sees where its focus is.

axe's JavaScript comes in the axe-playwright-python wheel and is evaluated in the page: nothing
is fetched, and the Content-Security-Policy stays as it is."""

import datetime

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.template import loader
from django.utils import timezone

from app.api import tokens
from app.mlmodels import deployments
from app.models import AlertChannel, AlertRule, Run, Schedule
from app.ops import alerts, backfills, schedules
from app.runs import engine, paramsets
from tests.conftest import database_refusing, make_user, train_version
from tests.test_browser import SCREENSHOTS, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BLOCKING = ("critical", "serious")
AXE = Axe()

# Every aria-describedby (Django adds them for help texts and errors), aria-labelledby,
# aria-controls and <label for> names an element of the page.
DANGLING_REFERENCES = """() => {
  const found = [];
  for (const attr of ["aria-describedby", "aria-labelledby", "aria-controls", "for"]) {
    for (const element of document.querySelectorAll(`[${attr}]`)) {
      const ids = element.getAttribute(attr).split(/\\s+/).filter(Boolean);
      const missing = ids.length ? ids.filter(id => !document.getElementById(id)) : ["(empty)"];
      for (const id of missing) found.push(`${element.tagName.toLowerCase()}${element.id ? "#" + element.id : ""}[${attr}="${id}"]`);
    }
  }
  return found;
}"""




def seed(operator):
    """One of each thing a page shows: a finished and a failed run, a parameter set, a
    schedule with a backfill, an alert rule with its incident, a model with a live version
    and a confusion matrix, an API token. Returns the ids the paths need."""
    done = engine.run_inline(*engine.start_run("fanout_demo", {"rows": 5}, user=operator, tags=["env=prod", "team:ml"]))
    Run.objects.filter(pk=done.pk).update(note="Checked by hand.\nThe input was late.")
    failed = engine.run_inline(*engine.start_run("flaky_demo", {}, user=operator))
    chosen = paramsets.create("fanout_demo", "small", {"rows": 5}, operator, note="five rows")
    schedule = schedules.create(Schedule(name="nightly", cron="30 2 * * *", timezone="Europe/Berlin"), "fanout_demo", operator)
    yesterday = timezone.now() - datetime.timedelta(days=1)
    backfill = backfills.start(schedule, yesterday - datetime.timedelta(days=2), yesterday, 1, operator)
    channel = AlertChannel.objects.create(name="ops", kind="email", target="ops@example.com")
    rule = AlertRule.objects.create(name="failures", condition="run_failed", pipeline_name="flaky_demo")
    rule.channels.add(channel)
    (incident,) = alerts.evaluate()
    versions = [train_version(accuracy=a) for a in (0.7, 0.9, 0.8)]
    deployments.deploy(versions[0], operator, "first release")
    deployments.deploy(versions[1], operator, "better accuracy")
    tokens.create(operator, "ci", operator)
    return {"done": done.pk, "failed": failed.pk, "set": chosen.pk, "schedule": schedule.pk, "backfill": backfill.pk,
            "rule": rule.pk, "incident": incident.pk}


def operator_paths(ids):
    done, failed = ids["done"], ids["failed"]
    return [
        "/dashboard/", "/pipelines/", "/pipelines/fanout_demo/", "/pipelines/flaky_demo/",  # flaky_demo: a yes/no parameter
        "/pipelines/fanout_demo/steps/load/",
        "/runs/", f"/runs/{done}/", f"/runs/{failed}/", f"/runs/{done}/steps/report/", f"/runs/{failed}/steps/validate/",
        f"/runs/{failed}/retry/",
        f"/runs/compare/?a={done}&b={failed}", f"/runs/compare/?a={done}", f"/runs/{done}/timeline/",
        "/runs/?since=yesterday&status=exploded&tag=no+good!",  # the run list's filter errors
        "/pipelines/fanout_demo/grid/", f"/runs/{failed}/steps/validate/mark/?outcome=succeeded", "/account/",
        "/pipelines/fanout_demo/parameter-sets/", f"/parameter-sets/{ids['set']}/", "/pipelines/flaky_demo/parameter-sets/new/",
        f"/parameter-sets/{ids['set']}/edit/",
        "/schedules/", f"/schedules/{ids['schedule']}/", "/pipelines/fanout_demo/schedules/new/",
        f"/schedules/{ids['schedule']}/edit/", f"/backfills/{ids['backfill']}/",
        "/alerts/", "/alerts/channels/new/", "/alerts/rules/new/", f"/alerts/rules/{ids['rule']}/edit/",
        "/incidents/", f"/incidents/{ids['incident']}/",
        "/models/", "/models/demo/", "/models/demo/versions/3/", "/models/demo/versions/3/deploy/",
        "/tokens/", "/audit/", "/audit/?since=yesterday",
        "/runs/999999/", "/no/such/page/", f"/runs/{done}/cancel/",  # two 404s and a cancel confirmation
    ]


STAKEHOLDER_PATHS = ["/", "/results/", "/results/fanout_demo/", "/results/models/demo/", "/runs/"]  # /runs/: a 403


def problems(page) -> list[str]:
    """The page's blocking violations as it is now, one line each: rule, impact, help and the
    failing nodes' targets."""
    found = [f"dangling reference {ref}" for ref in page.evaluate(DANGLING_REFERENCES)]
    for violation in AXE.run(page).response["violations"]:
        if violation["impact"] not in BLOCKING:
            continue
        targets = [" ".join(node["target"]) for node in violation["nodes"]]
        found.append(f"{violation['id']} ({violation['impact']}, {len(targets)}): {violation['help']} — {targets}")
    return found


class Audit:
    """Runs the checks on each page it is shown and keeps what they found, by page."""

    def __init__(self, page, base):
        self.page, self.base, self.found = page, base, {}

    def check(self, name):
        if found := problems(self.page):
            self.found[name] = found

    def visit(self, path):
        self.page.goto(f"{self.base}{path}")
        self.check(path)

    def report(self, width):
        lines = [f"axe at {width} px found critical or serious violations:"]
        for name, found in self.found.items():
            lines += [name] + [f"  {line}" for line in found]
        return "\n".join(lines)


def submit_login(page, username, password):
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")


@pytest.mark.parametrize("width", [390, 1600])
def test_no_page_has_a_critical_or_serious_axe_violation(live_server, browser, settings, model_demo, width):
    operator = make_user("olivia", "operators")
    stakeholder = make_user("sam", "stakeholders")
    ids = seed(operator)
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    audit = Audit(page, live_server.url)
    try:
        # Anonymous: the login page, a failed login, an expired form (the CSRF page), a locked login.
        audit.visit("/login/")
        submit_login(page, "olivia", "wrong")
        audit.check("/login/ (a failed login)")
        context.clear_cookies()
        submit_login(page, "olivia", "wrong")
        page.get_by_role("heading").first.wait_for()
        audit.check("/login/ (the CSRF failure page)")
        limit, settings.AXES_FAILURE_LIMIT = settings.AXES_FAILURE_LIMIT, 1
        audit.visit("/login/")
        submit_login(page, "mallory", "wrong")
        audit.check("/login/ (locked)")
        settings.AXES_FAILURE_LIMIT = limit
        # The 500 page renders without a request (app/web/errors.py): served as it is.
        server_error = loader.get_template("errors/500.html").render()
        page.route(f"{live_server.url}/boom/", lambda route: route.fulfill(status=500, body=server_error,
                                                                           content_type="text/html"))
        audit.visit("/boom/")

        audit.visit("/login/")
        log_in(page, operator)
        page.wait_for_url(f"{live_server.url}/dashboard/")
        for path in operator_paths(ids):
            audit.visit(path)
        # A run form with an invalid value: 422, each error next to its field.
        page.goto(f"{live_server.url}/pipelines/fanout_demo/")
        page.eval_on_selector("#id_rows", "input => input.form.noValidate = true")
        page.fill("#id_rows", "0")
        page.click("text=Run fanout_demo")
        page.locator(".field.invalid").first.wait_for()
        audit.check("/pipelines/fanout_demo/ (an invalid run form)")
        # A run the database refuses: 503, "The run was not saved".
        page.goto(f"{live_server.url}/pipelines/fanout_demo/")
        with database_refusing("app_run"):
            page.click("text=Run fanout_demo")
            page.get_by_text("The run was not saved").wait_for()
        audit.check("/pipelines/fanout_demo/run/ (the run was not saved)")

        page.locator("form.whoami button").click()
        page.wait_for_url(f"{live_server.url}/login/")
        log_in(page, stakeholder)
        page.wait_for_url(f"{live_server.url}/results/")
        for path in STAKEHOLDER_PATHS:
            audit.visit(path)
    finally:
        context.close()
    assert not audit.found, audit.report(width)


def test_the_keyboard_skips_to_the_content_and_every_focus_has_a_ring(live_server, page, model_demo):
    operator = make_user("olivia", "operators")
    engine.run_inline(*engine.start_run("fanout_demo", {"rows": 5}, user=operator))
    page.goto(f"{live_server.url}/login/")
    log_in(page, operator)
    page.wait_for_url(f"{live_server.url}/dashboard/")
    page.goto(f"{live_server.url}/pipelines/fanout_demo/")

    skip = page.get_by_role("link", name="Skip to content")
    assert skip.bounding_box()["y"] + skip.bounding_box()["height"] <= 0  # out of sight until it has the focus
    page.keyboard.press("Tab")
    assert skip.evaluate("link => link === document.activeElement")
    assert skip.bounding_box()["y"] >= 0
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "a11y-skip-link.png")

    rings = []
    for _ in range(60):  # the menu, the form's fields and buttons, the DAG's links, to the end of the page
        page.keyboard.press("Tab")
        # An outline; for a DAG node, its border (static/css/dag.css).
        ring = page.evaluate("""() => {
          const element = document.activeElement;
          if (element === document.body) return null;
          const node = element.closest("svg.dag") && element.querySelector("path");
          const style = getComputedStyle(node || element);
          const [kind, width] = node ? ["solid", style.strokeWidth] : [style.outlineStyle, style.outlineWidth];
          return [element.outerHTML.slice(0, 80), kind, parseFloat(width)];
        }""")
        if ring is None:
            break
        rings.append(ring)
    assert [ring for ring in rings if ring[1] != "solid" or ring[2] < 3] == []
    assert any("link-" in html for html, _, _ in rings)  # the DAG's steps were reached too
    page.locator("#link-total").focus()
    page.screenshot(path=SCREENSHOTS / "a11y-focus-ring.png")

    page.goto(f"{live_server.url}/pipelines/fanout_demo/")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    assert page.url.endswith("#content")
    page.keyboard.press("Tab")  # the next stop is inside the content, past the menu
    assert page.evaluate("document.getElementById('content').contains(document.activeElement)")
