"""The views an operator reaches by clicking, in a real browser: compare two runs from a run
page, zoom a DAG, and go from the runs × steps grid to a step."""

import pytest

from app.runs import engine
from tests.test_browser import SCREENSHOTS, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def finished(**params):
    return engine.run_inline(*engine.start_run("fanout_demo", params))


def test_an_operator_compares_two_runs_from_a_run_page(live_server, operator, page):
    first, second = finished(rows="10"), finished(rows="20")
    page.goto(f"{live_server.url}/login/")
    log_in(page, operator)
    page.goto(f"{live_server.url}/runs/{second.pk}/")

    page.click("text=Compare with…")
    page.select_option("#pick-recent", str(first.pk))
    page.click("button:text-is('Compare')")

    page.wait_for_url(f"**/runs/compare/?a={second.pk}&b={first.pk}")
    rows = page.locator("#compare-params tr", has_text="rows")
    assert "differs" in rows.inner_text() and "10" in rows.inner_text() and "20" in rows.inner_text()
    assert "differs" not in page.locator("#compare-params tr", has_text="seed").inner_text()
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "compare.png", full_page=True)


def test_a_dag_zooms_and_keeps_its_zoom_on_the_page(live_server, operator, page):
    run = finished(rows="10")
    page.goto(f"{live_server.url}/login/")
    log_in(page, operator)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    dag = page.locator(".dag-wrap svg.dag")
    natural = dag.bounding_box()["width"]

    page.click("button[aria-label='Zoom in']")

    assert page.locator(".dag-zoom output").inner_text() == "125 %"
    assert dag.bounding_box()["width"] == pytest.approx(natural * 1.25, rel=0.02)
    page.reload()
    assert page.locator(".dag-zoom output").inner_text() == "125 %"  # kept for this page
    page.click("button[aria-label='Natural size']")
    assert dag.bounding_box()["width"] == pytest.approx(natural, rel=0.02)


def test_the_grid_leads_from_a_cell_to_its_step_run(live_server, operator, page):
    runs = [finished(rows="10") for _ in range(3)]
    page.goto(f"{live_server.url}/login/")
    log_in(page, operator)
    page.goto(f"{live_server.url}/pipelines/fanout_demo/")

    page.click("text=Runs × steps grid and duration trend")
    cells = page.locator("a.gcell")
    assert cells.count() == 3 * 5
    page.locator(f'a.gcell[href="/runs/{runs[-1].pk}/steps/mean/"]').click()

    page.wait_for_url(f"**/runs/{runs[-1].pk}/steps/mean/")
    assert "mean" in page.locator("h1").inner_text()
