"""Step logs: one file per attempt in the artifact store, capped; pages show the end of it
and link to the whole file."""

import html

import pytest
from django.test import override_settings

from app import artifacts
from app.models import Status
from app.runs import engine

pytestmark = pytest.mark.django_db


@pytest.fixture
def chatty(define):
    """t_chatty: one step printing `lines` numbered lines of `width` characters."""
    from app.pipelines import Params, param

    class ChattyParams(Params):
        lines: int = param(10, ge=0, le=1_000_000)
        width: int = param(20, ge=1, le=10_000)

    pipe = define("t_chatty", params=ChattyParams)

    @pipe.step()
    def talk(ctx):
        for i in range(ctx.params.lines):
            print(f"line {i:07d} " + "x" * ctx.params.width)

    return pipe


def run_chatty(**params):
    return engine.run_inline(*engine.start_run("t_chatty", params))


def test_it_keeps_the_whole_log_in_a_file_and_shows_the_last_lines(chatty, operator_client):
    run = run_chatty(lines=500)
    talk = run.step_runs.get()

    page = operator_client.get(f"/runs/{run.pk}/steps/talk/").content.decode()

    assert talk.status == Status.SUCCEEDED
    assert "line 0000499" in page and "line 0000300" in page and "line 0000299" not in page
    assert f'href="/runs/{run.pk}/steps/talk/log/1/"' in page
    assert "Showing the end of the log (at most 200 lines)." in page
    download = operator_client.get(f"/runs/{run.pk}/steps/talk/log/1/")
    whole = b"".join(download.streaming_content).decode()
    assert download.status_code == 200 and download["Content-Type"] == "text/plain; charset=utf-8"
    assert "attachment" in download["Content-Disposition"]
    assert whole.count("\n") == 500 and whole.startswith("line 0000000 ")


@override_settings(STEP_LOG_MAX_BYTES=1_000_000)
def test_a_step_that_logs_too_much_keeps_the_first_part_and_says_how_much_was_dropped(chatty, operator_client):
    run = run_chatty(lines=5000, width=1000)  # ~5 MB

    step_page = operator_client.get(f"/runs/{run.pk}/steps/talk/")
    run_page = operator_client.get(f"/runs/{run.pk}/")

    size = artifacts.log_size(artifacts.log_path(run.pk, "talk", 1))
    assert 1_000_000 < size < 1_001_000
    shown = html.unescape(step_page.content.decode())
    assert "more bytes were dropped: an attempt's log is kept up to 1,000,000 bytes (STEP_LOG_MAX_BYTES)" in shown
    assert len(step_page.content) < 200_000 and len(run_page.content) < 200_000
    assert run.step_runs.get().status == Status.SUCCEEDED


def test_a_short_log_is_shown_whole_with_its_download_link(chatty, operator_client):
    run = run_chatty(lines=3)

    page = operator_client.get(f"/runs/{run.pk}/steps/talk/").content.decode()

    assert "line 0000000" in page and "Download the whole log" in page and "Showing the end" not in page


def test_the_log_of_an_attempt_that_does_not_exist_is_a_404(chatty, operator_client):
    run = run_chatty(lines=1)

    assert operator_client.get(f"/runs/{run.pk}/steps/talk/log/2/").status_code == 404
    assert operator_client.get(f"/runs/{run.pk}/steps/nope/log/1/").status_code == 404


def test_a_step_that_printed_nothing_has_no_log_to_download(chatty, operator_client):
    run = run_chatty(lines=0)

    page = operator_client.get(f"/runs/{run.pk}/steps/talk/").content.decode()

    assert "Nothing was printed or logged." in page and "Download the whole log" not in page
    assert operator_client.get(f"/runs/{run.pk}/steps/talk/log/1/").status_code == 404
