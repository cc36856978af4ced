"""The Content-Security-Policy enforced in a real browser: every kind of page works under it and
the browser reports no violation (an inline script, a style element htmx would add, a frame)."""

import pytest

from app.runs import engine
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"} at ${event.sourceFile}:${event.lineNumber}`);
});
"""


def test_the_pages_run_under_the_policy_without_a_violation(live_server, admin, page):
    run = engine.run_inline(*engine.start_run("fanout_demo", {"rows": "5"}))
    console = []
    page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
    page.add_init_script(RECORD_VIOLATIONS)

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", admin.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/dashboard/")

    pages = [
        "/dashboard/", "/runs/", f"/runs/{run.pk}/", f"/runs/{run.pk}/steps/load/", "/pipelines/",
        "/pipelines/fanout_demo/", "/results/", "/models/", "/audit/", "/tokens/", "/admin/", f"/admin/app/run/{run.pk}/change/",
    ]
    for path in pages:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"], path
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__violations") == [], path
    # htmx itself is loaded and works under the policy: the run page's DAG and the pipeline
    # page's layout are what htmx and the stylesheets draw
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    assert page.evaluate("typeof window.htmx") == "object"
    assert page.locator("svg.dag").count() == 1
    assert not [line for line in console if "Content Security Policy" in line]
