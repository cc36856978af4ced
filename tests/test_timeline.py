"""A run's timeline (/runs/<id>/timeline/ and templates/runs/_timeline.html): each step as a
bar on the run's span with a title naming it, its status in text, a link to the step page,
an axis from 0 s to the total; steps that have not started have no bar and say so; 1,000
steps keep their row height and scroll.

Runs are made with the engine (`start_run`, `run_inline`); the times of their step runs are
then set to known values, so the bars' positions can be checked exactly."""

import datetime
import re

import pytest
from django.template.loader import render_to_string
from django.utils import timezone

from app.models import Run, Status, StepRun
from app.runs import actions, engine
from app.web.timeline import ROW_HEIGHT, ticks, timeline

pytestmark = pytest.mark.django_db

T0 = datetime.datetime(2026, 3, 4, 12, 0, 0, tzinfo=datetime.UTC)


def at(seconds):
    return T0 + datetime.timedelta(seconds=seconds)


def timed_run(times: dict, run_end=10, status=Status.SUCCEEDED):
    """A finished fanout_demo run whose steps ran at `times` (step → (start, end) seconds
    after T0, or None for a step that never started) and that ended at `run_end`."""
    run = engine.run_inline(*engine.start_run("fanout_demo", {"rows": 10}))
    for step, span in times.items():
        if span is None:
            StepRun.objects.filter(run=run, step_name=step).update(status=Status.PENDING, started_at=None,
                                                                    finished_at=None)
        else:
            StepRun.objects.filter(run=run, step_name=step).update(started_at=at(span[0]), finished_at=at(span[1]))
    Run.objects.filter(pk=run.pk).update(status=status, started_at=T0, finished_at=None if run_end is None else at(run_end))
    run.refresh_from_db()
    return run


FANOUT = {"load": (0, 2), "total": (2, 3), "mean": (2, 6), "spread": (2, 4.5), "report": (6, 10)}


def rects(page):
    """(step, x, width, title) of every bar."""
    return re.findall(
        r'<a href="/runs/\d+/steps/(\w+)/" tabindex="-1"><rect class="bar st-\w+" x="([\d.]+)%" y="\d+" '
        r'width="([\d.]+)%" height="\d+" rx="3"><title>([^<]*)</title>', page,
    )


def text(response):
    return response.content.decode()


# --- access ----------------------------------------------------------------------------------


def test_it_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get("/runs/1/timeline/")

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/runs/1/timeline/"


def test_it_forbids_stakeholders(stakeholder_client):
    run = timed_run(FANOUT)

    response = stakeholder_client.get(f"/runs/{run.pk}/timeline/")

    assert response.status_code == 403
    assert "Only operators may open this page or do this." in text(response)


def test_it_refuses_a_post(operator_client):
    run = timed_run(FANOUT)

    assert operator_client.post(f"/runs/{run.pk}/timeline/").status_code == 405


def test_it_answers_404_naming_the_missing_run(operator_client):
    response = operator_client.get("/runs/99999/timeline/")

    assert response.status_code == 404
    assert "There is no run #99999." in text(response)


# --- the picture --------------------------------------------------------------------------------


def test_it_computes_each_bar_as_per_cent_of_the_runs_span():
    run = timed_run(FANOUT)

    found = timeline(run, run.step_runs.all())

    bars = {row["name"]: (row["x"], row["width"]) for row in found["rows"]}
    assert bars == {
        "load": ("0.000", "20.000"), "total": ("20.000", "10.000"), "mean": ("20.000", "40.000"),
        "spread": ("20.000", "25.000"), "report": ("60.000", "40.000"),
    }
    assert found["span"].seconds == 10
    assert [row["y"] for row in found["rows"]][:2] == [11, 11 + ROW_HEIGHT]
    assert found["height"] == 5 * ROW_HEIGHT


def test_it_draws_a_bar_per_step_with_a_title_and_a_link(operator_client):
    run = timed_run(FANOUT)

    response = operator_client.get(f"/runs/{run.pk}/timeline/")

    page = text(response)
    assert response.status_code == 200
    assert f"<h1>Timeline <small>of run #{run.pk}</small></h1>" in page
    bars = rects(page)
    assert [(step, x, width) for step, x, width, _title in bars] == [
        ("load", "0.000", "20.000"), ("total", "20.000", "10.000"), ("mean", "20.000", "40.000"),
        ("spread", "20.000", "25.000"), ("report", "60.000", "40.000"),
    ]
    assert bars[0][3] == "load · succeeded · 12:00:00 (+0.000 s) → 12:00:02 · 2.000 s"
    assert bars[4][3] == "report · succeeded · 12:00:06 (+6.0 s) → 12:00:10 · 4.000 s"
    assert f'<a href="/runs/{run.pk}/steps/mean/" title="mean"><code>mean</code></a>' in page
    assert '<span class="tl-state st-succeeded">succeeded<span class="tl-more"> · 4.000 s</span></span>' in page  # status in text, not colour alone
    assert f'<a href="/runs/{run.pk}/">← Back to run #{run.pk}</a>' in page


def test_it_labels_the_axis_from_0_s_to_the_total(operator_client):
    run = timed_run(FANOUT)

    page = text(operator_client.get(f"/runs/{run.pk}/timeline/"))

    labels = re.findall(r'<text x="([\d.]+)%" y="16" text-anchor="(\w+)"(?: class="minor")?>([^<]+)</text>', page)
    assert labels == [("0", "start", "0 s"), ("20.000", "middle", "2 s"), ("40.000", "middle", "4 s"),
                      ("60.000", "middle", "6 s"), ("80.000", "middle", "8 s"), ("100", "end", "10.0 s")]
    assert "From <time" in page and "· 10.0 s · 5 of 5 steps drawn</p>" in page


def test_it_says_not_started_for_a_step_without_a_start(operator_client):
    run = timed_run({**FANOUT, "report": None}, run_end=None, status=Status.RUNNING)

    page = text(operator_client.get(f"/runs/{run.pk}/timeline/"))

    assert "report" not in [step for step, *_rest in rects(page)]
    assert '<span class="tl-state st-pending">waiting<span class="tl-more"> · not started</span></span>' in page
    assert re.search(r'<text class="tl-note" x="6" y="\d+">not started</text>', page)
    assert "4 of 5 steps drawn, 1 not started" in page
    assert '>now</text>' in page  # the axis of an unfinished run ends now
    assert 'hx-get="/runs/' in page and 'hx-trigger="every 2s"' in page  # and the page refreshes itself


def test_it_draws_no_bar_for_a_step_whose_output_was_reused(operator_client, operator, define):
    broken = {"now": True}
    pipe = define("t_retried")

    @pipe.step()
    def first(ctx):
        return 1

    @pipe.step(after=[first])
    def second(ctx, first):
        if broken["now"]:
            raise RuntimeError("second is broken")

    failed = engine.run_inline(*engine.start_run("t_retried", {}))
    broken["now"] = False
    retried = engine.run_inline(*actions.retry_from_failure(failed, operator))

    page = text(operator_client.get(f"/runs/{retried.pk}/timeline/"))

    assert retried.status == Status.SUCCEEDED
    assert [step for step, *_rest in rects(page)] == ["second"]
    assert '<span class="tl-state st-succeeded">succeeded<span class="tl-more"> · reused from an earlier attempt' in page


def test_it_stops_polling_once_the_run_has_finished(operator_client):
    run = timed_run(FANOUT)

    response = operator_client.get(f"/runs/{run.pk}/timeline/", headers={"HX-Request": "true"})

    assert response.status_code == 286
    assert "<html" not in text(response) and 'id="timeline-live"' in text(response)
    assert "HX-Request" in response["Vary"]


def test_it_says_when_no_step_has_started(operator_client):
    run, _ready = engine.start_run("fanout_demo", {"rows": 10})

    page = text(operator_client.get(f"/runs/{run.pk}/timeline/"))

    assert "No step has started yet: the timeline begins with the first one." in page
    assert rects(page) == []
    assert page.count("not started</text>") == 5


def test_it_keeps_1000_steps_readable_in_a_scrolling_box(operator_client, define):
    pipe = define("t_thousand")
    for i in range(1000):
        pipe.step(name=f"s{i:04d}")(lambda ctx: None)
    run, _ready = engine.start_run("t_thousand", {})
    StepRun.objects.filter(run=run).update(status=Status.SUCCEEDED, started_at=T0, finished_at=at(1))
    Run.objects.filter(pk=run.pk).update(status=Status.SUCCEEDED, started_at=T0, finished_at=at(2))

    page = text(operator_client.get(f"/runs/{run.pk}/timeline/"))

    assert len(rects(page)) == 1000
    assert f'<svg class="tl-bars" width="100%" height="{1000 * ROW_HEIGHT}"' in page  # full height, never shrunk
    assert '<div class="tl-box"' in page
    assert f'/runs/{run.pk}/steps/s0999/' in page
    assert 'hx-get' not in page


def test_ticks_are_round_and_leave_room_for_the_total():
    assert [t["label"] for t in ticks(34.2)] == ["0 s", "10 s", "20 s", "34.2 s"]  # not 30 s, too close
    assert [t["label"] for t in ticks(0.45)] == ["0 s", "0.1 s", "0.2 s", "0.3 s", "0.450 s"]  # not 0.4 s, too close
    assert [t["label"] for t in ticks(100)] == ["0 s", "30 s", "60 s", "1 min 40 s"]
    assert [t["label"] for t in ticks(3 * 3600)] == ["0 s", "1 h", "2 h", "3 h 00 min"]
    assert [t["label"] for t in ticks(100, finished=False)] == ["0 s", "30 s", "60 s", "now"]
    assert [t["minor"] for t in ticks(34.2)] == [False, True, False, False]  # hidden on a phone
    assert [t["minor"] for t in ticks(10)] == [False, True, False, True, True, False]  # 8 s: near the end


def test_it_can_be_included_with_only_the_run_and_its_timeline():
    run = timed_run(FANOUT)

    html = render_to_string("runs/_timeline.html", {"run": run, "timeline": timeline(run, run.step_runs.all())})

    assert len(rects(html)) == 5
    assert timezone.is_aware(run.started_at)



def test_a_bar_that_fills_the_whole_span_starts_at_zero_not_minus_zero():
    from app.web import timeline as tl

    start = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.UTC)
    end = start + datetime.timedelta(seconds=0.3)  # 100 × 0.3 / 0.3 is 100.00000000000001 in floats
    step = StepRun(step_name="only", status=Status.SUCCEEDED, started_at=start, finished_at=end)

    row = tl._row(0, step, tl.Span(started_at=start, finished_at=end, end=end), end)

    assert (row["x"], row["width"]) == ("0.000", "100.000")
