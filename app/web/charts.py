"""Small server-rendered SVG charts (no JavaScript, no plotting library).

Every label goes through html.escape; numbers are formatted here.
"""

from html import escape

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 180, 44, 28, 12


def _frame(body: str, title: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{body}</svg>'
    )


def _axis(top: float, fmt) -> str:
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    lines = []
    for fraction in (0, 0.5, 1):
        y = PAD_TOP + plot_h * (1 - fraction)
        lines.append(f'<line class="grid" x1="{PAD_LEFT}" y1="{y:.1f}" x2="{WIDTH}" y2="{y:.1f}"/>')
        lines.append(f'<text class="tick" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(top * fraction))}</text>')
    return "".join(lines)


def bar_chart(points: list[tuple[str, float]], title: str, label_every: int = 5) -> str:
    """Bars for (label, value) points, e.g. runs per day; every `label_every`-th label shown."""
    top = max((v for _, v in points), default=0) or 1
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / max(len(points), 1)
    parts = [_axis(top, lambda v: f"{v:g}")]
    for i, (label, value) in enumerate(points):
        h = plot_h * value / top
        x = PAD_LEFT + i * step + step * 0.15
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{PAD_TOP + plot_h - h:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}">'
            f"<title>{escape(label)}: {value:g}</title></rect>"
        )
        last = len(points) - 1
        # Every label_every-th label, and the last one unless it would collide with those.
        if (i % label_every == 0 and last - i >= label_every / 2) or i == last:
            parts.append(f'<text class="tick" x="{x + step * 0.35:.1f}" y="{HEIGHT - 8}" text-anchor="middle">{escape(label)}</text>')
    return _frame("".join(parts), title)


def line_chart(points: list[tuple[str, float]], title: str) -> str:
    """A line with dots through (label, value) points, e.g. a metric over successive runs."""
    if not points:
        return _frame(f'<text class="tick" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data yet</text>', title)
    values = [v for _, v in points]
    low, high = min(values), max(values)
    span = (high - low) or abs(high) or 1
    low, high = low - span * 0.1, high + span * 0.1
    plot_w, plot_h = WIDTH - PAD_LEFT - 12, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / max(len(points) - 1, 1)

    def y_of(v):
        return PAD_TOP + plot_h * (1 - (v - low) / (high - low))

    coords = [(PAD_LEFT + 6 + i * step, y_of(v)) for i, v in enumerate(values)]
    parts = []
    for fraction in (0, 0.5, 1):
        v = low + (high - low) * fraction
        y = y_of(v)
        parts.append(f'<line class="grid" x1="{PAD_LEFT}" y1="{y:.1f}" x2="{WIDTH}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    parts.append('<polyline class="line" points="' + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>')
    for (x, y), (label, value) in zip(coords, points):
        parts.append(f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3.5"><title>{escape(label)}: {value:.4g}</title></circle>')
    parts.append(f'<text class="tick" x="{PAD_LEFT + 6}" y="{HEIGHT - 8}">{escape(points[0][0])}</text>')
    parts.append(f'<text class="tick" x="{WIDTH - 6}" y="{HEIGHT - 8}" text-anchor="end">{escape(points[-1][0])}</text>')
    return _frame("".join(parts), title)
