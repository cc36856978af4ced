"""Server-rendered SVG charts (no JavaScript, no plotting library).

Why they are drawn this way:

- **Three drawings per chart.** SVG text scales with its viewBox, so one drawing cannot have
  readable labels both in an 1,100 px card and on a 390 px phone. Each chart is drawn wide
  (960 units), medium (600) and small (340, fewer ticks), and the stylesheet shows the one
  that fits the figure's width (a container query on `.chart-figure`), filling it: its text
  then renders at 10 to 16 px whatever the screen. The cost is two more copies of a few
  dozen shapes per chart.
- **Nice ticks.** Value axes step by 1, 2 or 5 × 10^k, whole numbers for counts (no "0.5
  runs"); time axes tick on calendar boundaries and read "09:40" or "Dec 3", with the date
  (or year) on a second line where it changes.
- **Lines people can tell apart.** One line per series (a model, else a pipeline), each with
  its own colour (Okabe–Ito, readable with colour blindness), dash pattern and marker shape,
  named in an HTML legend that wraps on a phone. Every point says what it is in a `<title>`,
  shown on hover.

Every label goes through html.escape; numbers are formatted here.
"""

import datetime
import math
from dataclasses import dataclass, field
from html import escape

from django.utils import timezone

# (name, viewBox width, height, most time ticks, value ticks); site.css picks one by width.
SIZES = (("wide", 960, 260, 10, 5), ("medium", 600, 240, 6, 5), ("small", 340, 230, 4, 5))
FONT = 12  # user units, as the stylesheet sets for .tick
CHAR = FONT * 0.62  # a digit's width in DejaVu Sans, to reserve room for labels
PAD_TOP, PAD_RIGHT = 14, 14

PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#1d2330")
DASHES = ("", "7 4", "2 3", "10 3 2 3")
SHAPES = ("circle", "square", "triangle", "diamond", "down")


@dataclass
class Point:
    x: datetime.datetime | datetime.date
    y: float
    title: str  # what pointing at it says, e.g. "iris-rf · run #12 · Dec 3 09:40: 0.953"


@dataclass
class Series:
    name: str
    points: list[Point] = field(default_factory=list)
    style: int | None = None  # which colour, dash and marker; by default its place in the chart


# --- ticks ----------------------------------------------------------------------------------


def nice_step(raw: float) -> float:
    """The smallest of 1, 2, 5 × 10^k that is at least `raw`."""
    if raw <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if raw <= multiple * magnitude * (1 + 1e-9):
            return multiple * magnitude
    return 10 * magnitude


def nice_ticks(low: float, high: float, count: int = 5, integer: bool = False, from_zero: bool = False) -> list[float]:
    """About `count` ticks covering low..high, stepping by a nice step (a whole one if
    `integer`); the first and last enclose every value."""
    low, high = min(low, high), max(low, high)
    if from_zero:
        low = min(low, 0.0)
    if high == low:
        pad = 1.0 if (integer or high == 0) else abs(high) * 0.05
        high = high + pad
        low = low if from_zero and low == 0 else low - pad
    step = nice_step((high - low) / max(count - 1, 1))
    if integer:
        step = max(step, 1.0)
    first = math.floor(low / step + 1e-9) * step
    last = math.ceil(high / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(round((last - first) / step) + 1)]


def tick_label(value: float, step: float) -> str:
    """`value` with as many decimals as the step between ticks needs: 0.95, 20, 1,500."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    text = f"{value:,.{decimals}f}"
    return "0" if text.strip("-0.,") == "" else text


def day_label(moment) -> str:
    """A day as people write it: "Dec 3"."""
    return f"{moment:%b} {moment.day}"  # "Dec 3", never a zero-padded or cut "Dec 03"


_UNITS = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30.44 * 86400, "year": 365.25 * 86400}
_TIME_STEPS = [("minute", n) for n in (1, 2, 5, 10, 15, 30)] + [("hour", n) for n in (1, 2, 3, 6, 12)] + [
    ("day", 1), ("day", 2), ("week", 1), ("week", 2)] + [("month", n) for n in (1, 2, 3, 6)] + [
    ("year", n) for n in (1, 2, 5, 10, 20, 50, 100)]


def _add_months(moment: datetime.datetime, months: int) -> datetime.datetime:
    index = moment.month - 1 + months
    return moment.replace(year=moment.year + index // 12, month=index % 12 + 1)


def _first_tick(start: datetime.datetime, unit: str, n: int) -> datetime.datetime:
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "minute":
        return midnight + datetime.timedelta(minutes=math.ceil((start - midnight).total_seconds() / 60 / n) * n)
    if unit == "hour":
        return midnight + datetime.timedelta(hours=math.ceil((start - midnight).total_seconds() / 3600 / n) * n)
    if unit == "day":
        return midnight if midnight >= start else midnight + datetime.timedelta(days=1)
    if unit == "week":  # on Mondays
        day = midnight if midnight >= start else midnight + datetime.timedelta(days=1)
        return day + datetime.timedelta(days=-day.weekday() % 7)
    if unit == "month":
        tick = midnight.replace(day=1)
        while tick < start or (tick.month - 1) % n:
            tick = _add_months(tick, 1)
        return tick
    tick = midnight.replace(month=1, day=1)
    while tick < start or tick.year % n:
        tick = tick.replace(year=tick.year + 1)
    return tick


def _next_tick(tick: datetime.datetime, unit: str, n: int) -> datetime.datetime:
    if unit == "month":
        return _add_months(tick, n)
    if unit == "year":
        return tick.replace(year=tick.year + n)
    return tick + datetime.timedelta(seconds=_UNITS[unit] * n)


def time_ticks(start: datetime.datetime, end: datetime.datetime, most: int = 8) -> list[tuple[datetime.datetime, str, str]]:
    """At most about `most` ticks on calendar boundaries between two naive local times, as
    (time, label, second line): ("09:40", "Dec 3"), ("Dec 3", "2026"), ("Jan", "2027")."""
    span = max((end - start).total_seconds(), 1)
    unit, n = next(((u, n) for u, n in _TIME_STEPS if span / (_UNITS[u] * n) <= most - 1), _TIME_STEPS[-1])
    ticks, tick = [], _first_tick(start, unit, n)
    while tick <= end:
        ticks.append(tick)
        tick = _next_tick(tick, unit, n)
    labelled, previous = [], None
    for tick in ticks:
        if unit in ("minute", "hour"):
            label, second, changed = f"{tick:%H:%M}", day_label(tick), previous is None or tick.date() != previous.date()
        elif unit in ("day", "week"):
            label, second, changed = day_label(tick), str(tick.year), previous is None or tick.year != previous.year
        elif unit == "month":
            label, second, changed = f"{tick:%b}", str(tick.year), previous is None or tick.year != previous.year
        else:
            label, second, changed = str(tick.year), "", False
        labelled.append((tick, label, second if changed else ""))
        previous = tick
    return labelled


def _local(moment) -> datetime.datetime:
    """A naive time in the viewer's zone (dates: their midnight), to place and label."""
    if isinstance(moment, datetime.datetime):
        return timezone.localtime(moment).replace(tzinfo=None) if timezone.is_aware(moment) else moment
    return datetime.datetime.combine(moment, datetime.time())


def time_label(moment: datetime.datetime) -> str:
    """A run's time for a point's title: "Dec 3 09:40" in the viewer's zone."""
    local = _local(moment)
    return f"{day_label(local)} {local:%H:%M}"


# --- shapes ---------------------------------------------------------------------------------


def _shape(shape: str, x: float, y: float, colour: str, extra: str = "", size: float = 4.5) -> str:
    """A marker centred on (x, y); `extra` goes inside it (its <title>)."""
    s = size
    if shape == "circle":
        head = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{s:.1f}"'
    elif shape == "square":
        head = f'<rect x="{x - s * 0.85:.1f}" y="{y - s * 0.85:.1f}" width="{s * 1.7:.1f}" height="{s * 1.7:.1f}"'
    elif shape == "cross":  # a plus turned by 45°
        d, w, r = s * 1.25, s * 0.4, math.sqrt(0.5)
        plus = ((-w, -d), (w, -d), (w, -w), (d, -w), (d, w), (w, w), (w, d), (-w, d), (-w, w), (-d, w), (-d, -w), (-w, -w))
        head = '<path d="M' + "L".join(f"{x + (px - py) * r:.1f},{y + (px + py) * r:.1f}" for px, py in plus) + 'Z"'
    else:
        s = size * 1.25
        points = {
            "triangle": ((0, -s), (s * 0.9, s * 0.7), (-s * 0.9, s * 0.7)),
            "diamond": ((0, -s), (s, 0), (0, s), (-s, 0)),
            "down": ((0, s), (s * 0.9, -s * 0.7), (-s * 0.9, -s * 0.7)),
        }[shape]
        head = '<path d="M' + "L".join(f"{x + dx:.1f},{y + dy:.1f}" for dx, dy in points) + 'Z"'
    head += f' class="mark" fill="{colour}" stroke="#fff" stroke-width="1"'
    return f"{head}>{extra}</{head[1:head.index(' ')]}>"


def style_of(index: int) -> tuple[str, str, str]:
    """(colour, dash pattern, marker shape) of the index-th series: unique for 60 series."""
    return PALETTE[index % len(PALETTE)], DASHES[index % len(DASHES)], SHAPES[index % len(SHAPES)]


def _swatch(colour: str, dash: str, shape: str) -> str:
    line = f'<line x1="1" y1="7" x2="33" y2="7" stroke="{colour}" stroke-width="2"'
    line += f' stroke-dasharray="{dash}"/>' if dash else "/>"
    return (f'<svg class="swatch" viewBox="0 0 34 14" width="34" height="14" aria-hidden="true">{line}'
            f'{_shape(shape, 17, 7, colour)}</svg>')


def legend(entries: list[tuple[str, str]]) -> str:
    """An HTML legend of (swatch markup, name) entries."""
    items = "".join(f"<li>{swatch}<span>{escape(name)}</span></li>" for swatch, name in entries)
    return f'<ul class="chart-legend">{items}</ul>'


def _figure(drawings: list[str], legend_html: str = "") -> str:
    return f'<figure class="chart-figure">{"".join(drawings)}{legend_html}</figure>'


def _svg(size: str, width: int, height: int, title: str, body: str) -> str:
    return (
        f'<svg class="chart chart-{size}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{body}</svg>'
    )


def _value_axis(ticks: list[float], labels: list[str], left: float, right: float, y_of) -> str:
    parts = []
    for value, label in zip(ticks, labels):
        y = y_of(value)
        parts.append(f'<line class="grid" x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick y" x="{left - 6:.1f}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>')
    return "".join(parts)


def _empty(title: str, text: str) -> str:
    return _figure([
        _svg(size, width, 90, title, f'<text class="tick" x="{width / 2}" y="50" text-anchor="middle">{escape(text)}</text>')
        for size, width, _h, _x, _y in SIZES
    ])


# --- line chart -----------------------------------------------------------------------------


def line_chart(series: list[Series], title: str, *, integer: bool = False, from_zero: bool = False,
               empty: str = "no data yet") -> str:
    """One line per series through its points over time, with a legend naming each line.
    `integer`: the values are counts (whole-number ticks, and a zero's marker is drawn small,
    so days without runs do not bury the others); `from_zero`: the axis starts at 0."""
    series = [s for s in series if s.points]
    if not series:
        return _empty(title, empty)
    styles = [style_of(i if s.style is None else s.style) for i, s in enumerate(series)]
    drawings = [_line_drawing(series, styles, title, integer, from_zero, *size) for size in SIZES]
    return _figure(drawings, legend([(_swatch(*style), s.name) for s, style in zip(series, styles)]))


def _line_drawing(series, styles, title, integer, from_zero, size, width, height, most_x, most_y) -> str:
    values = [p.y for s in series for p in s.points]
    ticks = nice_ticks(min(values), max(values), most_y, integer, from_zero)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1
    labels = [tick_label(v, step) for v in ticks]
    left = max(len(label) for label in labels) * CHAR + 12
    right = width - PAD_RIGHT

    times = [_local(p.x) for s in series for p in s.points]
    start, end = min(times), max(times)
    if end - start < datetime.timedelta(minutes=10):  # one run, or runs a few seconds apart
        middle = start + (end - start) / 2
        start, end = middle - datetime.timedelta(minutes=5), middle + datetime.timedelta(minutes=5)
    inset = (end - start) * 0.03
    start, end = start - inset, end + inset
    xticks = time_ticks(start, end, most_x)
    bottom = height - (40 if any(second for _t, _l, second in xticks) else 26)
    span = (end - start).total_seconds()

    def x_of(moment):
        return left + (right - left) * (_local(moment) - start).total_seconds() / span

    def y_of(value):
        return PAD_TOP + (bottom - PAD_TOP) * (1 - (value - ticks[0]) / (ticks[-1] - ticks[0]))

    parts = [_value_axis(ticks, labels, left, right, y_of)]
    parts.append(f'<line class="axis" x1="{left:.1f}" y1="{bottom:.1f}" x2="{right:.1f}" y2="{bottom:.1f}"/>')
    parts.append(_time_axis(xticks, x_of, bottom, left, right))
    for s, (colour, dash, _shape_name) in zip(series, styles):
        points = sorted(s.points, key=lambda p: _local(p.x))
        coords = " ".join(f"{x_of(p.x):.1f},{y_of(p.y):.1f}" for p in points)
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<polyline class="series" points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dashes}/>')
    for s, (colour, _dash, shape) in zip(series, styles):
        for p in s.points:
            small = 2.0 if integer and p.y == 0 else 4.5
            parts.append(_shape(shape, x_of(p.x), y_of(p.y), colour, f"<title>{escape(p.title)}</title>", small))
    return _svg(size, width, height, title, "".join(parts))


def _time_axis(xticks, x_of, bottom, left, right) -> str:
    parts = []
    for tick, label, second in xticks:
        x = x_of(tick)
        # A label near an edge is anchored inward, so it is never cut.
        half = max(len(label), len(second)) * CHAR / 2
        anchor, tx = ("start", max(x - 2, left - 4)) if x - half < left - 8 else (
            ("end", min(x + 2, right + PAD_RIGHT - 2)) if x + half > right + PAD_RIGHT - 2 else ("middle", x))
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{bottom:.1f}" x2="{x:.1f}" y2="{bottom + 4:.1f}"/>')
        parts.append(f'<text class="tick x" x="{tx:.1f}" y="{bottom + 17:.1f}" text-anchor="{anchor}">{escape(label)}</text>')
        if second:
            parts.append(f'<text class="tick x sub" x="{tx:.1f}" y="{bottom + 32:.1f}" text-anchor="{anchor}">{escape(second)}</text>')
    return "".join(parts)


# --- duration bars --------------------------------------------------------------------------


@dataclass
class Bar:
    label: str  # under the bar, e.g. "#12"
    seconds: float | None  # None: not finished, no bar
    status: str
    title: str  # what pointing at it says


# Successful, failed and cancelled runs differ by marker shape, not colour alone.
BAR_STYLES = {
    "succeeded": ("#1f7a3f", "#b7e2c4", "circle", "✓ succeeded"),
    "failed": ("#b42318", "#f6c3bd", "cross", "✗ failed"),
    "cancelled": ("#374151", "#d7dae0", "square", "■ cancelled"),
}
OTHER_BAR = ("#1d4ed8", "#c9d7fb", "triangle", "▶ other")


def _duration_unit(longest: float) -> tuple[float, str]:
    if longest < 120:
        return 1, "s"
    if longest < 7200:
        return 60, "min"
    return 3600, "h"


def duration_chart(bars: list[Bar], title: str, empty: str = "no finished run yet") -> str:
    """A bar per run (in the order given) for how long it took, with a marker on top whose
    shape says how it ended, and a legend of those shapes."""
    if not any(b.seconds is not None for b in bars):
        return _empty(title, empty)
    drawings = [_duration_drawing(bars, title, *size) for size in SIZES]
    shown = {b.status if b.status in BAR_STYLES else "other" for b in bars if b.seconds is not None}
    entries = [
        (_swatch_marker(*BAR_STYLES.get(status, OTHER_BAR)[:3]), label)
        for status, (_i, _f, _s, label) in [*BAR_STYLES.items(), ("other", OTHER_BAR)]
        if status in shown
    ]
    return _figure(drawings, legend(entries))


def _swatch_marker(ink: str, fill: str, shape: str) -> str:
    return (f'<svg class="swatch" viewBox="0 0 14 14" width="14" height="14" aria-hidden="true">'
            f'{_shape(shape, 7, 7, ink)}</svg>')


def _duration_drawing(bars, title, size, width, height, most_x, most_y) -> str:
    longest = max(b.seconds for b in bars if b.seconds is not None)
    factor, unit = _duration_unit(longest)
    ticks = nice_ticks(0, longest / factor, most_y, from_zero=True)
    step = ticks[1] - ticks[0]
    labels = [f"{tick_label(v, step)} {unit}" for v in ticks]
    left = max(len(label) for label in labels) * CHAR + 12
    right, bottom = width - PAD_RIGHT, height - 26
    slot = (right - left) / len(bars)

    def y_of(value):
        return PAD_TOP + 8 + (bottom - PAD_TOP - 8) * (1 - value / ticks[-1])

    parts = [_value_axis(ticks, labels, left, right, y_of)]
    parts.append(f'<line class="axis" x1="{left:.1f}" y1="{bottom:.1f}" x2="{right:.1f}" y2="{bottom:.1f}"/>')
    every = max(1, math.ceil(len(bars) / (most_x + 1)))
    for i, bar in enumerate(bars):
        centre = left + slot * (i + 0.5)
        # Labels every `every` bars, counted from the newest (rightmost) one.
        if (len(bars) - 1 - i) % every == 0:
            parts.append(f'<text class="tick x" x="{centre:.1f}" y="{bottom + 17:.1f}" text-anchor="middle">{escape(bar.label)}</text>')
        if bar.seconds is None:
            continue
        ink, fill, shape, _label = BAR_STYLES.get(bar.status, OTHER_BAR)
        top = y_of(bar.seconds / factor)
        wide = min(max(slot * 0.6, 1.5), 40)  # a few runs: slim bars, not slabs
        tip = f"<title>{escape(bar.title)}</title>"
        parts.append(
            f'<g class="run-bar">{tip}<rect x="{centre - wide / 2:.1f}" y="{top:.1f}" width="{wide:.1f}" '
            f'height="{max(bottom - top, 0.5):.1f}" fill="{fill}"/>'
            f'{_shape(shape, centre, top, ink, size=min(4.5, max(slot * 0.4, 2.5)))}</g>'
        )
    return _svg(size, width, height, title, "".join(parts))


# --- a fixed time window, with marks --------------------------------------------------------


@dataclass
class Mark:
    at: datetime.datetime
    label: str  # drawn above the chart, e.g. "v3 deployed"
    key: str = ""  # drawn instead where labels would not fit (a phone), e.g. "2": the page lists them


def window_chart(series: list[Series], title: str, start: datetime.datetime, end: datetime.datetime, *,
                 marks: list[Mark] = (), styles: list[tuple[str, str, str]] | None = None, integer: bool = False,
                 empty: str = "no data in this span") -> str:
    """Lines over a fixed window (start..end, whatever the points cover), from zero, with a
    labelled vertical line at each mark (a deploy) so a change lines up with its cause. A point
    whose y is None is a gap: the line stops there rather than bridging it. `styles` gives each
    series its (colour, dash, shape); by default its place in the chart."""
    styles = styles or [style_of(i if s.style is None else s.style) for i, s in enumerate(series)]
    kept = [(s, style) for s, style in zip(series, styles) if any(p.y is not None for p in s.points)]
    drawn, styles = [s for s, _style in kept], [style for _s, style in kept]
    if not drawn:
        return _empty(title, empty)
    drawings = [_window_drawing(drawn, styles, title, start, end, marks, integer, *size) for size in SIZES]
    return _figure(drawings, legend([(_swatch(*style), s.name) for s, style in zip(drawn, styles)]))


def _mark_rows(xs_labels, left, right, most_rows=3):
    """Each mark's label row and anchor, so that labels side by side do not overlap."""
    ends = []  # per row: the right edge of its last label
    placed = []
    for x, label in xs_labels:
        width = len(label) * CHAR * 0.92 + 4
        anchor, x0 = ("end", x - width - 3) if x + 3 + width > right + PAD_RIGHT else ("start", x + 3)
        row = next((i for i, edge in enumerate(ends) if x0 > edge + 6), None)
        if row is None and len(ends) < most_rows:
            row = len(ends)
            ends.append(0.0)
        elif row is None:  # crowded: the row whose last label ends first (each keeps its <title>)
            row = min(range(len(ends)), key=ends.__getitem__)
        ends[row] = x0 + width
        placed.append((row, anchor))
    return placed, len(ends)


def _window_drawing(series, styles, title, start, end, marks, integer, size, width, height, most_x, most_y) -> str:
    values = [p.y for s in series for p in s.points if p.y is not None]
    ticks = nice_ticks(0, max(values), most_y, integer, from_zero=True)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1
    labels = [tick_label(v, step) for v in ticks]
    left = max(len(label) for label in labels) * CHAR + 12
    right = width - PAD_RIGHT
    start, end = _local(start), _local(end)
    xticks = time_ticks(start, end, most_x)
    span = max((end - start).total_seconds(), 1)

    def x_of(moment):
        return left + (right - left) * (_local(moment) - start).total_seconds() / span

    shown = [m for m in marks if start <= _local(m.at) <= end]
    texts = [m.label for m in shown]
    placed, rows = _mark_rows([(x_of(m.at), text) for m, text in zip(shown, texts)], left, right)
    if rows > 2 and all(m.key for m in shown):  # too crowded to read: the keys, listed under the chart
        texts = [m.key for m in shown]
        placed, rows = _mark_rows([(x_of(m.at), text) for m, text in zip(shown, texts)], left, right)
    top = PAD_TOP + rows * 15
    height += rows * 15
    bottom = height - (40 if any(second for _t, _l, second in xticks) else 26)

    def y_of(value):
        return top + (bottom - top) * (1 - (value - ticks[0]) / (ticks[-1] - ticks[0]))

    parts = [_value_axis(ticks, labels, left, right, y_of)]
    parts.append(f'<line class="axis" x1="{left:.1f}" y1="{bottom:.1f}" x2="{right:.1f}" y2="{bottom:.1f}"/>')
    parts.append(_time_axis(xticks, x_of, bottom, left, right))
    for mark, text, (row, anchor) in zip(shown, texts, placed):
        x, y = x_of(mark.at), PAD_TOP + row * 15 + 9
        tx = x + 3 if anchor == "start" else x - 3
        tip = f"{mark.key + ' · ' if mark.key else ''}{mark.label} · {time_label(mark.at)}"
        parts.append(
            f'<g class="chart-mark"><title>{escape(tip)}</title>'
            f'<line x1="{x:.1f}" y1="{y - 9:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="#1d2330" stroke-width="1.2" '
            f'stroke-dasharray="4 3"/>'
            f'<text class="tick mark-label" x="{tx:.1f}" y="{y + 3:.1f}" text-anchor="{anchor}">{escape(text)}</text></g>')
    many = max(len(s.points) for s in series) > 30
    for s, (colour, dash, _shape_name) in zip(series, styles):
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        run = []
        for p in sorted(s.points, key=lambda p: _local(p.x)) + [None]:
            if p is not None and p.y is not None:
                run.append(f"{x_of(p.x):.1f},{y_of(p.y):.1f}")
                continue
            if len(run) > 1:
                parts.append(f'<polyline class="series" points="{" ".join(run)}" fill="none" stroke="{colour}" '
                             f'stroke-width="2"{dashes}/>')
            run = []
    for s, (colour, _dash, shape) in zip(series, styles):
        for p in s.points:
            if p.y is not None:
                small = 1.6 if (integer and p.y == 0) else (2.6 if many else 4.5)
                parts.append(_shape(shape, x_of(p.x), y_of(p.y), colour, f"<title>{escape(p.title)}</title>", small))
    return _svg(size, width, height, title, "".join(parts))


def sparkline(values: list[float], title: str, width: int = 140, height: int = 28) -> str:
    """A small line of `values` (evenly spaced, from zero), for a row of a table."""
    top = max(values, default=0) or 1
    step = (width - 4) / max(len(values) - 1, 1)
    coords = " ".join(f"{2 + i * step:.1f},{height - 3 - (height - 6) * v / top:.1f}" for i, v in enumerate(values))
    return (f'<svg class="sparkline" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
            f'<line x1="2" y1="{height - 3}" x2="{width - 2}" y2="{height - 3}" stroke="#d0d5dd" stroke-width="1"/>'
            f'<polyline points="{coords}" fill="none" stroke="#0072b2" stroke-width="1.6" stroke-linejoin="round"/></svg>')
