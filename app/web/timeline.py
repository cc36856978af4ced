"""A run's steps on a time axis (a Gantt chart), for templates/runs/_timeline.html.

The bars are drawn as server-side SVG: one `<rect>` per step whose `x` and `width` are per
cent of the run's span (its start to its end, or to now while it runs). Geometry attributes
are not styles, so the picture does not depend on the Content-Security-Policy's allowance of
inline style attributes (`style-src-attr`), and every bar carries an SVG `<title>`.

Rows have a fixed height in pixels, the same in the HTML column of step names and in the
SVG beside it, so the two line up at any number of steps: 1,000 steps make a 40,000 px tall
picture that scrolls in its box, never one shrunk until it cannot be read.
"""

import datetime
import math
from dataclasses import dataclass

from django.utils import timezone

from app.models import Status

ROW_HEIGHT = 40  # px: a step's name and, below it, its status and duration
BAR_HEIGHT = 18  # px
MIN_WIDTH = 0.3  # per cent: a step of a few milliseconds is still a visible sliver
TARGET_TICKS = 5  # at most this many intervals between 0 and the end of the axis

# Interval between ticks, in seconds: each is a whole number of the unit its label uses.
TICK_STEPS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
    1, 2, 5, 10, 15, 30,
    60, 120, 300, 600, 900, 1800,
    3600, 7200, 10800, 21600, 43200,
    86400, 172800, 604800,
)

# What a step without a bar says instead, next to its status ("upstream failed · not run").
NO_BAR = {
    Status.PENDING: "not started",
    Status.QUEUED: "not started",
    Status.RETRYING: "waiting for its next attempt",
    Status.UPSTREAM_FAILED: "not run",
    Status.CANCELLED: "not started",
}
# Statuses whose step may have started_at set without a bar to draw: a step queued again
# after a failed attempt keeps that attempt's start until the next one begins.
WAITING = (Status.PENDING, Status.QUEUED, Status.RETRYING)


@dataclass
class Span:
    """The time the axis covers. `finished_at` is None while the run is unfinished, so the
    `took` filter says "… so far", as it does for the run itself."""

    started_at: datetime.datetime
    finished_at: datetime.datetime | None
    end: datetime.datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.started_at).total_seconds()


def timeline(run, step_runs) -> dict:
    """The bars, rows and axis ticks of `run`'s timeline: its step runs (in the order given,
    the run page's topological order) against its span, from `started_at` to `finished_at`
    or now. A step without a start (or waiting for its next attempt) has no bar and a note."""
    step_runs = list(step_runs)
    now = timezone.now()
    span = _span(run, step_runs, now)
    rows = [_row(index, step_run, span, now) for index, step_run in enumerate(step_runs)]
    return {
        "span": span,
        "rows": rows,
        "ticks": ticks(span.seconds, finished=span.finished_at is not None) if span else [],
        "height": max(len(rows), 1) * ROW_HEIGHT,
        "row_height": ROW_HEIGHT,
        "bar_height": BAR_HEIGHT,
        "drawn": sum(1 for row in rows if row["bar"]),
        "not_started": sum(1 for row in rows if row["status"] in (Status.PENDING, Status.QUEUED) and not row["bar"]),
    }


def _span(run, step_runs, now) -> Span | None:
    starts = [sr.started_at for sr in step_runs if sr.started_at and not sr.reused_from_id]
    if run.started_at:
        starts.append(run.started_at)
    if not starts:
        return None
    start = min(starts)
    finished = run.finished_at if run.is_finished else None
    ends = [finished or now] + [sr.finished_at for sr in step_runs if sr.finished_at and not sr.reused_from_id]
    end = max(max(ends), start)
    return Span(started_at=start, finished_at=end if finished else None, end=end)


def _row(index, step_run, span, now) -> dict:
    started, finished = step_run.started_at, step_run.finished_at
    row = {
        "name": step_run.step_name,
        "status": step_run.status,
        "label": step_run.get_status_display(),
        "step_run": step_run,  # for the `took` filter: the same words as the step table
        "started_at": started,
        "finished_at": finished,
        "y": index * ROW_HEIGHT + (ROW_HEIGHT - BAR_HEIGHT) // 2,
        "text_y": index * ROW_HEIGHT + ROW_HEIGHT // 2 + 4,
        "bar": False,
        "note": "",
    }
    if step_run.reused_from_id:
        row["note"] = "reused from an earlier attempt"
    elif started is None or step_run.status in WAITING or span is None:
        note = NO_BAR.get(step_run.status, "did not run")  # e.g. an outcome set without running it
        if step_run.status == Status.QUEUED and step_run.attempt:
            note = f"queued for attempt {step_run.attempt + 1}"
        row["note"] = note
    else:
        total = span.seconds or 1e-3
        end = finished or (now if span.finished_at is None else span.end)
        offset = min(max((started - span.started_at).total_seconds(), 0.0), total)
        length = min(max((end - started).total_seconds(), 0.0), total - offset)
        x = 100 * offset / total
        width = max(100 * length / total, MIN_WIDTH)
        x = max(min(x, 100 - width), 0.0)  # never "-0.000" when a bar fills the whole span
        row.update(bar=True, x=f"{x:.3f}", width=f"{width:.3f}", offset=f"+{_length_label(offset)}")
    return row


def ticks(total: float, finished: bool = True) -> list[dict]:
    """Axis ticks for a span of `total` seconds: 0, round values at a step chosen from
    TICK_STEPS (at most TARGET_TICKS intervals), and the end of the span, labelled with
    its length (or "now" while the run is unfinished). A round tick too close to the end
    is left out so that labels do not overlap; every other one, and those near the end, are
    marked minor, for narrow screens to hide."""
    result = [{"x": "0", "label": "0 s", "anchor": "start", "minor": False}]
    if total <= 0:
        return result
    step = _step_for(total)
    k = 1
    while k * step < total * 0.85:
        fraction = k * step / total
        # A narrow screen shows 0, the end and the even ticks left of two thirds only.
        result.append({"x": f"{100 * fraction:.3f}", "label": _tick_label(k * step, step),
                       "anchor": "middle", "minor": k % 2 == 1 or fraction > 2 / 3})
        k += 1
    result.append({"x": "100", "label": _length_label(total) if finished else "now", "anchor": "end", "minor": False})
    return result


def _step_for(total: float) -> float:
    step = next((step for step in TICK_STEPS if total / step <= TARGET_TICKS), None)
    return step or TICK_STEPS[-1] * math.ceil(total / TICK_STEPS[-1] / TARGET_TICKS)


def _tick_label(seconds: float, step: float) -> str:
    """A short label in the unit of the step: '0.25 s', '30 s', '5 min', '3 h', '2 d'."""
    if step < 1:
        return f"{seconds:.{-math.floor(math.log10(step))}f} s"
    if step < 60:
        return f"{seconds:.0f} s"
    if step < 3600:
        return f"{seconds / 60:g} min"
    if step < 86400:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 86400:g} d"


def _length_label(seconds: float) -> str:
    """The length of the whole span or a step's offset in it, in the words of the `took`
    filter (app.web.times): '0.450 s', '34.2 s', '1 min 40 s', '3 h 05 min'."""
    if seconds < 1:
        return f"{seconds:.3f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
