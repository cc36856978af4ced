"""The Health card of the model page and the live models on the operator home: what
app.mlmodels.health computes, drawn as SVG charts (app.web.charts).

Each version in each role (live, canary, shadow) keeps one colour on all three charts; on the
latency and error charts its two lines differ by dash and marker (p50 solid with circles, p95
dashed with triangles; 5xx solid, 4xx dotted), so the legend reads the same on every chart.
"""

from django.utils.http import urlencode

from app.mlmodels import health
from app.web import charts

SPAN_LABELS = {"hour": "Last hour", "day": "Last day", "week": "Last week"}
SOLID, DASHED, DOTTED = "", "7 4", "2 3"


def _bucket_words(bucket) -> str:
    minutes = int(bucket.total_seconds() // 60)
    return "minute" if minutes == 1 else f"{minutes} min" if minutes < 60 else f"{minutes // 60} h"


def _number(value, unit="") -> str:
    if value is None:
        return "no requests"
    text = f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    return f"{text}{unit}"


def _charts(page) -> list[tuple[str, str]]:
    """(heading, SVG figure) of the three charts."""
    every = _bucket_words(page["bucket"])
    start, end = page["start"], page["end"]
    marks = [charts.Mark(m["at"], m["label"], str(i)) for i, m in enumerate(page["marks"], 1)]
    requests, latency, errors = [], [], []
    request_styles, latency_styles, error_styles = [], [], []
    any_errors = any(s["totals"]["errors"] for s in page["series"])
    for i, s in enumerate(page["series"]):
        colour = charts.PALETTE[i % len(charts.PALETTE)]
        name = s["name"]

        def title(p, what, value, name=name):
            return f"{name} · {charts.time_label(p['at'])} ({every}) · {what}: {value} · {p['requests']:,} requests"

        requests.append(charts.Series(name, [
            charts.Point(p["at"], p["per_minute"] if p["in_use"] else None,
                         title(p, "requests per minute", _number(p["per_minute"])))
            for p in s["points"]]))
        request_styles.append((colour, SOLID, charts.SHAPES[i % len(charts.SHAPES)]))
        for key, dash, shape in (("p50", SOLID, "circle"), ("p95", DASHED, "triangle")):
            latency.append(charts.Series(f"{name} {key}", [
                charts.Point(p["at"], p[key], title(p, key, _number(p[key], " ms"))) for p in s["points"]]))
            latency_styles.append((colour, dash, shape))
        for key, label, dash, shape in (("rate_5xx", "5xx", SOLID, "cross"), ("rate_4xx", "4xx", DOTTED, "square")):
            if any_errors and not s["totals"][f"errors_{label}"]:
                continue  # a line along the axis among lines that rise says nothing; drawn when all are flat
            errors.append(charts.Series(f"{name} {label}", [
                charts.Point(p["at"], p[key], title(p, f"{label} errors", _number(p[key], " %")))
                for p in s["points"]]))
            error_styles.append((colour, dash, shape))
    return [
        (f"Requests per minute (a point every {every})",
         charts.window_chart(requests, "Requests per minute", start, end, marks=marks, styles=request_styles)),
        ("Latency, p50 and p95 (ms)",
         charts.window_chart(latency, "Latency p50 and p95 in ms", start, end, marks=marks, styles=latency_styles,
                             empty="no requests in this span")),
        ("Error rate, 4xx and 5xx (% of requests)",
         charts.window_chart(errors, "Error rate in percent", start, end, marks=marks, styles=error_styles,
                             empty="no requests in this span")),
    ]


def card(model, request) -> dict:
    """The Health card's context: health.page for the span the request asks for (?span=hour,
    day or week; anything else is the hour), its charts, and links to the other spans that
    keep the page's other parameters."""
    page = health.page(model, request.GET.get("span"))
    links = []
    for span in page["spans"]:
        query = request.GET.copy()
        query["span"] = span
        links.append({"span": span, "label": SPAN_LABELS[span], "query": urlencode(query, doseq=True),
                      "current": span == page["span"]})
    page["span_links"] = links
    page["span_label"] = SPAN_LABELS[page["span"]].lower()
    page["charts"] = _charts(page) if not page["empty"] else []
    return page


def home(now=None) -> list[dict]:
    """Each live model's last hour, with a sparkline of its requests per 5 minutes."""
    rows = health.home_rows(now)
    for row in rows:
        row["sparkline"] = charts.sparkline(
            row["spark"], f"{row['model'].name}: requests per 5 minutes over the last hour: "
                          + ", ".join(str(n) for n in row["spark"]))
    return rows
