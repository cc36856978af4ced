"""The charts people read (app/web/charts.py) on the results pages and the operator home:
a line per model (else per pipeline) with a legend, nice ticks, whole counts, a title per
point, and the parameters that tell the runs apart.

Runs are made in-process with the engine, the code the worker runs."""

import datetime
import re

import pytest
from django.utils import timezone

from app.pipelines.registry import Params, param
from app.runs import engine
from app.web import charts

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("remove_run_files")]

DAY_OR_TIME = re.compile(r"(?:[A-Z][a-z]{2} [1-9]\d?|\d\d:\d\d|[A-Z][a-z]{2}|\d{4})")


def finished(name, **params):
    return engine.run_inline(*engine.start_run(name, params))


def html(response):
    return response.content.decode()


def wide_drawings(page) -> list[str]:
    """Each chart's wide drawing (the medium and small ones repeat it for narrower cards)."""
    return re.findall(r'<svg class="chart chart-wide".*?</svg>', page, re.S)


def value_ticks(svg) -> list[str]:
    return re.findall(r'<text class="tick y" [^>]*>([^<]*)</text>', svg)


def time_tick_labels(svg) -> list[str]:
    return re.findall(r'<text class="tick x(?: sub)?" [^>]*>([^<]*)</text>', svg)


def point_titles(svg) -> list[str]:
    return re.findall(r"<title>([^<]*)</title>", svg)[1:]  # the first one is the chart's


@pytest.fixture
def two_datasets():
    """train_classifier on iris twice and on wine once: models iris-rf and wine-rf."""
    return [
        finished("train_classifier", dataset="iris", n_estimators="5", seed="1"),
        finished("train_classifier", dataset="wine", n_estimators="5", seed="1"),
        finished("train_classifier", dataset="iris", n_estimators="7", seed="1"),
    ]


def test_it_draws_a_line_per_model_with_a_legend(stakeholder_client, two_datasets):
    page = html(stakeholder_client.get("/results/train_classifier/"))

    accuracy = page[page.index("<h2>accuracy</h2>"):]
    accuracy = accuracy[:accuracy.index("</figure>")]
    wide = wide_drawings(accuracy)[0]
    assert wide.count('<polyline class="series"') == 2
    assert re.findall(r"<li><svg class=\"swatch\".*?</svg><span>([^<]*)</span></li>", accuracy) == ["iris-rf", "wine-rf"]
    iris, wine = re.findall(r'<polyline class="series" points="[^"]*" fill="none" stroke="(#\w+)"[^>]*>', wide)
    assert iris != wine


def test_it_shows_stakeholders_the_parameters_that_tell_the_runs_apart(stakeholder_client, two_datasets):
    page = html(stakeholder_client.get("/results/train_classifier/"))

    table = page[page.index("<table"):page.index("</table>")]
    headers = re.findall(r"<th[^>]*>([^<]*)</th>", table)
    assert headers[:5] == ["Run", "Finished", "Model", "dataset", "n_estimators"]
    assert "max_depth" not in headers and "seed" not in headers  # the same in every run
    first = two_datasets[0]
    assert re.search(rf"<td>#{first.pk}</td><td>.*?</td><td>iris-rf</td><td><code>iris</code></td><td><code>5</code></td>", table)
    assert any(f"run #{first.pk} · " in t and " · dataset=iris · n_estimators=5: " in t
               for t in point_titles(wide_drawings(page)[0]))


def test_it_gives_every_point_a_title_with_its_value(stakeholder_client, two_datasets):
    page = html(stakeholder_client.get("/results/train_classifier/"))

    for svg in wide_drawings(page):
        titles = point_titles(svg)
        assert len(titles) == 3 and len(re.findall(r"<(?:circle|rect|path) [^>]*class=\"mark\"", svg)) == 3
        assert all(re.fullmatch(r"(iris|wine)-rf · run #\d+ · [A-Z][a-z]{2} \d+ \d\d:\d\d · .*: [\d.]+", t) for t in titles)


def test_its_value_ticks_are_nice_and_its_times_whole(stakeholder_client, two_datasets):
    page = html(stakeholder_client.get("/results/train_classifier/"))

    for svg in wide_drawings(page):
        ticks = [float(label) for label in value_ticks(svg)]
        steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
        assert len(steps) == 1 and re.fullmatch(r"[125]0*|0\.0*[125]", f"{steps.pop():g}".replace("e-0", "0.0"))
        labels = time_tick_labels(svg)
        assert labels and all(DAY_OR_TIME.fullmatch(label) for label in labels), labels


def test_it_counts_runs_per_day_a_line_per_model_or_pipeline_in_whole_numbers(operator_client, model_demo):
    finished("t_model_demo", model="alpha")
    finished("t_model_demo", model="beta")
    finished("fanout_demo", rows="5")

    page = html(operator_client.get("/dashboard/"))

    chart = page[page.index("Runs per day"):]
    chart = chart[:chart.index("</figure>")]
    assert re.findall(r"<span>([^<]*)</span></li>", chart) == ["alpha", "beta", "fanout_demo"]
    wide = wide_drawings(chart)[0]
    assert value_ticks(wide) == ["0", "1"]  # one run each: no "0.5 runs"
    today = charts.day_label(timezone.localtime())
    assert f"<title>{today} · alpha: 1 run</title>" in wide and f"<title>{today} · fanout_demo: 1 run</title>" in wide
    assert len(point_titles(wide)) == 3 * 30


class NoteParams(Params):
    note: str = param("plain", help="a note")


def test_it_escapes_a_parameter_value_with_markup(stakeholder_client, define):
    pipe = define("t_notes", params=NoteParams)

    @pipe.step()
    def measure(ctx):
        ctx.log_metric("score", len(ctx.params.note))

    finished("t_notes", note="<b>bold</b>")
    finished("t_notes", note="plain")

    page = html(stakeholder_client.get("/results/t_notes/"))

    assert "<b>" not in page
    assert "<code>&lt;b&gt;bold&lt;/b&gt;</code>" in page and "note=&lt;b&gt;bold&lt;/b&gt;: 11" in page


# --- the drawing functions ------------------------------------------------------------------


def test_it_escapes_a_series_name_and_titles():
    now = timezone.now()
    chart = charts.line_chart([charts.Series("<b>model</b>", [charts.Point(now, 1.0, "<b>run</b>: 1")])], "t <b>x</b>")

    assert "<b>" not in chart
    assert "<span>&lt;b&gt;model&lt;/b&gt;</span>" in chart and "<title>&lt;b&gt;run&lt;/b&gt;: 1</title>" in chart
    assert 'aria-label="t &lt;b&gt;x&lt;/b&gt;"' in chart


@pytest.mark.parametrize(("low", "high", "integer", "expected"), [
    (0.8947, 0.9778, False, [0.85, 0.9, 0.95, 1.0]),
    (0, 3, True, [0, 1, 2, 3]),
    (0, 1, True, [0, 1]),
    (0, 7, True, [0, 2, 4, 6, 8]),
    (0, 0, True, [0, 1]),
    (12, 480, False, [0, 200, 400, 600]),
    (0.5, 0.5, False, [0.46, 0.48, 0.5, 0.52, 0.54]),
])
def test_it_picks_nice_ticks(low, high, integer, expected):
    assert charts.nice_ticks(low, high, 5, integer, from_zero=integer) == pytest.approx(expected)


def test_it_labels_ticks_with_the_decimals_their_step_needs():
    assert [charts.tick_label(v, 0.05) for v in (0.85, 0.9, 1.0)] == ["0.85", "0.90", "1.00"]
    assert [charts.tick_label(v, 1) for v in (0, 1, 2)] == ["0", "1", "2"]
    assert charts.tick_label(15000, 5000) == "15,000"


def test_it_ticks_days_without_zero_padding_or_cut_labels():
    start = datetime.datetime(2026, 11, 3, 14, 0)
    ticks = charts.time_ticks(start, start + datetime.timedelta(days=29), most=8)

    assert [label for _t, label, _s in ticks] == ["Nov 9", "Nov 16", "Nov 23", "Nov 30"]  # Mondays
    assert ticks[0][2] == "2026" and all(second == "" for _t, _l, second in ticks[1:])


def test_it_ticks_hours_on_round_minutes_with_the_date_where_it_changes():
    start = datetime.datetime(2026, 12, 2, 22, 47)
    ticks = charts.time_ticks(start, start + datetime.timedelta(hours=2, minutes=10), most=8)

    assert [label for _t, label, _s in ticks] == ["23:00", "23:30", "00:00", "00:30"]
    assert [second for _t, _l, second in ticks] == ["Dec 2", "", "Dec 3", ""]


def test_it_ticks_months_with_the_year_where_it_changes():
    ticks = charts.time_ticks(datetime.datetime(2026, 10, 20), datetime.datetime(2027, 4, 2), most=8)

    assert [(label, second) for _t, label, second in ticks] == [
        ("Nov", "2026"), ("Dec", ""), ("Jan", "2027"), ("Feb", ""), ("Mar", ""), ("Apr", "")]


def test_it_tells_runs_apart_by_marker_shape_not_colour_alone():
    bars = [charts.Bar("#1", 3.0, "succeeded", "ok"), charts.Bar("#2", 5.0, "failed", "bad")]

    chart = charts.duration_chart(bars, "durations")

    wide = wide_drawings(chart)[0]
    assert "<circle " in wide and "<path " in wide  # ● for succeeded, ✗ for failed
    assert "✓ succeeded</span>" in chart and "✗ failed</span>" in chart
    assert value_ticks(wide) == ["0 s", "2 s", "4 s", "6 s"]
