"""The Feedback card of the model page: what app.mlmodels.feedback computes, with its chart
drawn as SVG (app.web.charts): live accuracy, or mean absolute error for a model that
answers numbers, over time per version, and the version's offline metric as a flat line
beside it when it measures the same thing."""

from app.mlmodels import feedback
from app.web import charts


def card(model) -> dict | None:
    """feedback.page(model) with `chart` (SVG markup) when there are points to draw."""
    page = feedback.page(model)
    if page and page["series"]:
        measure = "Live accuracy (%)" if page["kind"] == "classes" else "Live mean absolute error"
        step = "hour" if page["hourly"] else "day"
        series = [charts.Series(s["name"], [charts.Point(*p) for p in s["points"]], style=_style(s))
                  for s in page["series"]]
        page["chart"] = charts.line_chart(series, f"{measure} of the labelled predictions of each {step}, per version")
    return page


def _style(series) -> int:
    """A version's live line solid in a colour of its own; its offline line the same colour,
    dash-dotted (charts.style_of: colour by index mod 7, dash by index mod 4)."""
    solid = (8 * series["slot"]) % 28  # ≡ slot (mod 7), ≡ 0 (mod 4)
    return solid + 7 if series["offline"] else solid
