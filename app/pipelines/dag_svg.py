"""Draw a pipeline's DAG as inline SVG, in two steps so the slow one is cached.

`render_layout(graph)` runs Graphviz `dot` once for a pipeline snapshot and
returns an SVG *layout* with placeholders: it depends only on the DAG's shape
and docs, never on a run, so it can be cached (or built off the request path
when `is_large`). `apply_status(layout, statuses, base_url)` then fills in one
run's statuses and links with a single regex pass (~4 ms for 1,000 steps):
cheap enough for every page view and htmx poll.

In the layout, each step is drawn as::

    <g id="step-NAME" class="node step"> ...
      <a id="link-NAME" aria-label="step NAME:" aria-labelledby="link-NAME status-NAME" tabindex="0"
         xlink:href="@@BASE@@NAME/" xlink:title="first doc line"> <path .../>
        <text ...>NAME</text>
        <text id="status-NAME" class="status" ...>retries: 2</text>

A link's accessible name is "step NAME: " and its status line ("step load: ✓ succeeded"),
through aria-labelledby: whatever writes the status line (apply_status, or the run page's
script between polls) renames the link with it, and the layout stays the same for every run.
The docstring is the link's tooltip.

The status line's width is reserved by laying it out with the widest status
label, so whatever `apply_status` writes there never changes the geometry.
Only step names (Python identifiers) and our own constants go through
Graphviz; user text (docs) is added afterwards with `html.escape`, because
Graphviz rewrites backslash sequences and keeps text that looks like an
entity as is.
"""

import html
import re

import pygraphviz

# status -> "icon text"; the icon makes a status readable without colour.
STATUS_LABELS: dict[str, str] = {
    "pending": "○ waiting",
    "queued": "… queued",
    "running": "▶ running",
    "succeeded": "✓ succeeded",
    "failed": "✗ failed",
    "upstream_failed": "⊘ upstream failed",
    "cancelled": "■ cancelled",
    "retrying": "↻ retrying",
    "skipped": "⤼ skipped",
    "awaiting": "▶ in progress",
}


def map_label(status: str, done: int, total: int, failed: int) -> str:
    """A mapped step's status line: its status icon and its items' count (▶ 12/40 · 1 failed)."""
    icon = STATUS_LABELS.get(status, "?").split(" ")[0]
    return f"{icon} {done}/{total}" + (f" · {failed} failed" if failed else "")

# Bump when the layout's markup changes, and key cached layouts on it: an old
# layout would not match apply_status's regex, or lack what a newer page needs.
# 2: links named by the step and its status (aria-labelledby).
LAYOUT_VERSION = 2

LARGE_STEPS = 200  # is_large(): above this, render the layout in a background task
# dot's crossing minimisation and network simplex dominate on big graphs:
# measured 2,000 nodes / 6,000 edges at 38 s without these options, 9.9 s with.
_FAST_NODES, _FAST_EDGES = 300, 600
_FAST_OPTIONS = {"mclimit": "0.1", "nslimit": "1", "nslimit1": "1", "splines": "line"}

# Only DejaVu is installed where Graphviz measures text (via Pango); Verdana
# has close metrics for browsers without DejaVu, so labels still fit the boxes.
_FONT = "DejaVu Sans,Verdana,sans-serif"
_FONT_SIZE = 12

_BASE = "@@BASE@@"  # href placeholder, becomes the (escaped) base_url
_TIP = "@@TIP@@"  # tooltip placeholder, becomes the escaped first doc line
# Lay the status line out with the widest label (as measured by Graphviz) so
# every label fits later. Step names are identifiers and cannot contain it.
_SLOT = STATUS_LABELS["upstream_failed"]

_PROLOG_RE = re.compile(r"\A.*?(?=<svg)", re.S)
_COMMENT_RE = re.compile(r"<!--.*?-->\n?", re.S)
_ROOT_RE = re.compile(r'<svg width="([\d.]+)pt" height="[\d.]+pt"\s+')
# One node of Graphviz's output, from its group up to its status line.
_LAYOUT_NODE_RE = re.compile(
    r'(<g id="step-(\w+)" class="node step">.*?)<text ([^>]*)>' + re.escape(_SLOT) + "</text>", re.S
)
# What apply_status rewrites, in one pass: a node's class list together with
# its href placeholder a few characters further on, or a status line's text.
# Both alternatives start with the literal 'id="st' on purpose: re then scans
# for that prefix quickly (~4 ms instead of ~40 ms on a 1,000-step layout).
_STATUS_RE = re.compile(
    r'id="st(?:ep-(\w+)" class="node step"([^@]*)' + _BASE + r'|atus-(\w+)"([^>]*>)[^<]*)'
)


def is_large(graph: dict) -> bool:
    """Whether laying `graph` out is slow enough (seconds) to keep it off the request path."""
    return len(graph.get("steps", ())) > LARGE_STEPS


def _first_line(doc: str | None) -> str:
    for line in (doc or "").strip().splitlines():
        return line.strip()
    return ""


def _idle_text(step: dict) -> str:
    """The status line of a step outside any run (the conceptual DAG)."""
    retries = step.get("retries") or 0
    return f"retries: {retries}" if retries else ""


def _agraph(graph: dict) -> pygraphviz.AGraph:
    steps, edges = graph["steps"], graph.get("edges", [])
    agraph = pygraphviz.AGraph(directed=True, strict=False)
    agraph.graph_attr.update(
        rankdir="TB", bgcolor="transparent", nodesep="0.3", ranksep="0.45", pad="0.1", fontname=_FONT
    )
    # Presentation attributes only: CSS rules (static/css/dag.css) override them.
    agraph.node_attr.update(
        shape="box", style="rounded,filled", fillcolor="#ffffff", color="#8a9199",
        fontname=_FONT, fontsize=str(_FONT_SIZE), margin="0.14,0.06", penwidth="1.2",
    )
    agraph.edge_attr.update(color="#8a9199", arrowsize="0.7", penwidth="1.1")
    if len(steps) > _FAST_NODES or len(edges) > _FAST_EDGES:
        agraph.graph_attr.update(_FAST_OPTIONS)
    for step in steps:
        name = step["name"]
        agraph.add_node(
            name, label=f"{name}\n{_SLOT}", id=f"step-{name}", URL=f"{_BASE}{name}/",
            tooltip=_TIP, **{"class": "step"},
        )
    for upstream, downstream in edges:
        agraph.add_edge(upstream, downstream, id=f"edge-{upstream}-{downstream}")
    return agraph


def render_layout(graph: dict) -> str:
    """Lay out a pipeline snapshot with Graphviz `dot` (once) and return an SVG layout.

    `graph` is a snapshot dict: {"steps": [{"name", "doc", "retries", ...}],
    "edges": [[upstream, downstream], ...]}. The result starts with `<svg`
    (no prolog), has class "dag" and a viewBox but no fixed size (its natural
    width is in the CSS variable --dag-width), and still holds placeholders:
    pass it through `apply_status` before showing it.
    """
    raw = _agraph(graph).draw(format="svg", prog="dot").decode("utf-8")
    # Graphviz writes "-" as "&#45;" in ids and titles; plain "-" is valid XML
    # and keeps ids greppable as step-NAME.
    svg = _COMMENT_RE.sub("", _PROLOG_RE.sub("", raw, count=1)).replace("&#45;", "-")
    # Font on the root instead of on every <text>: a quarter less to scan in apply_status.
    svg = svg.replace(f' font-family="{_FONT}" font-size="{_FONT_SIZE}.00"', "")
    root = f'<svg class="dag" style="--dag-width:\\1pt" font-family="{_FONT}" font-size="{_FONT_SIZE}" '
    svg, rooted = _ROOT_RE.subn(root, svg, count=1)
    steps = {step["name"]: step for step in graph["steps"]}

    def node(match: re.Match) -> str:
        head, name, text_attrs = match.groups()
        step = steps[name]
        tip = html.escape(_first_line(step.get("doc")) or name, quote=True)
        head = head.replace(f'xlink:title="{_TIP}"', f'xlink:title="{tip}"', 1)
        # Named by the step and its status line, not by the tooltip (no "id=\"st" here:
        # apply_status's regex looks for that). tabindex="0" says what browsers do anyway: axe
        # does not count an xlink:href link as focusable, and would call a DAG that scrolls in
        # its box unreachable by keyboard.
        named = head.replace(
            f'<a xlink:href="{_BASE}',
            f'<a id="link-{name}" aria-label="step {name}:" aria-labelledby="link-{name} status-{name}" tabindex="0" '
            f'xlink:href="{_BASE}',
            1,
        )
        if named == head:
            raise RuntimeError(f"dag_svg: unexpected Graphviz SVG (no link in the node of {name})")
        head = named
        idle = html.escape(_idle_text(step), quote=False)
        return f'{head}<text id="status-{name}" class="status" {text_attrs}>{idle}</text>'

    svg, found = _LAYOUT_NODE_RE.subn(node, svg)
    if not rooted or found != len(steps):  # a Graphviz output change would otherwise fail silently
        raise RuntimeError(f"dag_svg: unexpected Graphviz SVG ({found} of {len(steps)} nodes found)")
    return svg


def apply_status(layout_svg: str, statuses: dict[str, str] | None, base_url: str, labels: dict | None = None) -> str:
    """Fill one run's statuses and the step links into a layout from `render_layout`.

    Each step in `statuses` gets the class `st-<status>` and its status line
    shows STATUS_LABELS[status] (icon + text); steps not in `statuses` (or
    all of them when it is None: the conceptual DAG) keep a plain "node step"
    class and show their retries, if any. Links go to base_url + name + "/". `labels`
    replaces the status line of some steps (a mapped step's count of items).
    No Graphviz, no XML parsing: one regex pass, so it is fine per request.
    """
    statuses = statuses or {}
    base = html.escape(base_url, quote=True)

    def fill(match: re.Match) -> str:
        group_step, head_rest, text_step, text_rest = match.groups()
        status = statuses.get(group_step or text_step)
        if group_step:  # unknown statuses still get a class hook, never raw text in it
            css = "" if status is None else f" st-{status if status in STATUS_LABELS else 'unknown'}"
            return f'id="step-{group_step}" class="node step{css}"{head_rest}{base}'
        if status is None:
            return match[0]
        label = html.escape((labels or {}).get(text_step) or STATUS_LABELS.get(status, status), quote=False)
        return f'id="status-{text_step}"{text_rest}{label}'

    return _STATUS_RE.sub(fill, layout_svg)
