"""A run's note in a real browser: typed while the run page updates itself, it is kept (the
summary it sits in is replaced by each update), and saving it swaps it in without a reload."""

import pytest
from django.utils import timezone

from app.models import Run, Status
from app.runs import engine
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_note_typed_while_the_run_goes_on_survives_its_updates_and_saves_in_place(live_server, operator, page):
    run, _ready = engine.start_run("fanout_demo", {"rows": "10"}, tags=["env=prod"])
    page.goto(f"{live_server.url}/login/?next=/runs/{run.pk}/")
    page.fill("#id_username", operator.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/runs/{run.pk}/")
    page.evaluate("window.loadedOnce = true")  # a full page load would wipe it out

    page.click("text=Add a note")
    page.fill("#run-note-input", "the input was late")
    # The run changes: the next update replaces the summary, where the note is.
    Run.objects.filter(pk=run.pk).update(status=Status.RUNNING, started_at=timezone.now())
    page.locator("#run-status", has_text="running").wait_for(timeout=15_000)
    assert page.input_value("#run-note-input") == "the input was late"

    page.click("text=Save note")
    page.locator("#run-note .run-note-text", has_text="the input was late").wait_for(timeout=10_000)
    assert f"The note of run #{run.pk} is saved." in page.inner_text(".messages")
    assert page.evaluate("window.loadedOnce") is True
    run.refresh_from_db()
    assert run.note == "the input was late"
    assert page.locator(".run-head a.tag", has_text="env=prod").get_attribute("href") == "/runs/?tag=env%3Dprod"
