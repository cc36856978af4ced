"""Tests for app/dag_svg.py: Graphviz layout once, statuses applied by string ops."""

import random
import re
import time
import xml.etree.ElementTree as ET

import pygraphviz
import pytest

from app.pipelines import dag_svg
from app.pipelines.dag_svg import STATUS_LABELS, apply_status, is_large, render_layout

SVG = "{http://www.w3.org/2000/svg}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
XLINK_TITLE = "{http://www.w3.org/1999/xlink}title"
BASE = "/runs/42/steps/"


def snapshot(edges, names=None, docs=None, retries=None):
    """A pipeline snapshot dict like the registry's, steps in topological order."""
    names = names or list(dict.fromkeys(n for edge in edges for n in edge))
    docs, retries = docs or {}, retries or {}
    steps = [
        {
            "name": name,
            "doc": docs.get(name, ""),
            "source": f"def {name}(ctx): ...",
            "after": [u for u, v in edges if v == name],
            "inputs": [u for u, v in edges if v == name],
            "retries": retries.get(name, 0),
        }
        for name in names
    ]
    return {"pipeline": "demo", "description": "", "steps": steps, "edges": [list(e) for e in edges]}


FANOUT = snapshot([("load", "a"), ("load", "b"), ("load", "c"), ("a", "merge"), ("b", "merge"), ("c", "merge")])


def big_snapshot(n, seed=0):
    """n steps, each depending on 1-3 of the 30 steps before it (about 2n edges)."""
    rng = random.Random(seed)
    edges = []
    for i in range(1, n):
        for d in sorted(rng.sample(range(max(0, i - 30), i), k=min(i, rng.randint(1, 3)))):
            edges.append((f"s{d}", f"s{i}"))
    return snapshot(edges, names=[f"s{i}" for i in range(n)])


@pytest.fixture(scope="module")
def fanout_layout():
    return render_layout(FANOUT)


def parse(svg):
    return ET.fromstring(svg)


def nodes(root):
    return {g.get("id"): g for g in root.iter(f"{SVG}g") if "node" in g.get("class", "").split()}


def status_text(group):
    return next(t for t in group.iter(f"{SVG}text") if t.get("class") == "status").text or ""


def geometry(svg):
    """Everything positional in the SVG, in document order."""
    return re.findall(r'\b(?:d|points|x|y|viewBox|transform)="[^"]*"', svg)


def test_it_renders_well_formed_svg_with_one_group_per_step_and_one_edge_per_dependency(fanout_layout):
    root = parse(apply_status(fanout_layout, None, BASE))
    assert set(nodes(root)) == {f"step-{s['name']}" for s in FANOUT["steps"]}
    edges = [g.get("id") for g in root.iter(f"{SVG}g") if g.get("class") == "edge"]
    assert sorted(edges) == sorted(f"edge-{u}-{v}" for u, v in FANOUT["edges"])


def test_it_returns_an_inline_svg_root_that_css_can_scale(fanout_layout):
    assert fanout_layout.startswith("<svg ")
    assert "<?xml" not in fanout_layout and "DOCTYPE" not in fanout_layout
    root_tag = fanout_layout[: fanout_layout.index(">")]
    assert 'class="dag"' in root_tag and "viewBox=" in root_tag
    assert not re.search(r'\s(width|height)="', root_tag)
    assert re.search(r"--dag-width:[\d.]+pt", root_tag)


def test_it_gives_each_node_a_class_hook_a_link_and_a_tooltip(fanout_layout):
    docs = {"load": "Load the rows.\n\nMore text that is not in the tooltip."}
    root = parse(apply_status(render_layout(snapshot(FANOUT["edges"], docs=docs)), None, BASE))
    for node_id, group in nodes(root).items():
        name = node_id.removeprefix("step-")
        assert group.get("class") == "node step"
        link = next(group.iter(f"{SVG}a"))
        assert link.get(XLINK_HREF) == f"{BASE}{name}/"
        assert link.get(XLINK_TITLE) == ("Load the rows." if name == "load" else name)


def test_it_names_each_link_by_its_step_and_its_status_line(fanout_layout):
    root = parse(apply_status(fanout_layout, {"load": "succeeded"}, BASE))
    for node_id, group in nodes(root).items():
        name = node_id.removeprefix("step-")
        link = next(group.iter(f"{SVG}a"))
        # aria-labelledby names the link by its own aria-label, then the status line's text
        # (which the run page's script rewrites between polls): "step load: ✓ succeeded".
        assert link.get("aria-label") == f"step {name}:"
        assert link.get("aria-labelledby").split() == [link.get("id"), f"status-{name}"]
        assert link.get("tabindex") == "0"  # focusable for axe too, not only for browsers
        assert [t.get("id") for t in group.iter(f"{SVG}text") if t.get("class") == "status"] == [f"status-{name}"]
    assert status_text(nodes(root)["step-load"]) == "✓ succeeded"


def test_it_applies_status_class_and_visible_status_text_to_each_node(fanout_layout):
    statuses = {"load": "succeeded", "a": "failed", "b": "running", "c": "retrying", "merge": "upstream_failed"}
    root = parse(apply_status(fanout_layout, statuses, BASE))
    for node_id, group in nodes(root).items():
        name = node_id.removeprefix("step-")
        assert group.get("class").split() == ["node", "step", f"st-{statuses[name]}"]
        assert status_text(group) == STATUS_LABELS[statuses[name]]
        assert next(group.iter(f"{SVG}a")).get(XLINK_HREF) == f"{BASE}{name}/"
    assert STATUS_LABELS["succeeded"] == "✓ succeeded" and STATUS_LABELS["failed"] == "✗ failed"


def test_it_has_an_icon_and_text_label_for_every_status():
    statuses = {"pending", "queued", "running", "succeeded", "failed", "upstream_failed", "cancelled", "retrying",
                "skipped", "awaiting"}
    assert set(STATUS_LABELS) == statuses
    for status, label in STATUS_LABELS.items():
        icon, text = label.split(" ", 1)
        assert len(icon) == 1 and not icon.isalnum() and text


def test_it_leaves_steps_without_a_status_as_the_conceptual_dag():
    layout = render_layout(snapshot(FANOUT["edges"], retries={"load": 2}))
    for statuses in (None, {}, {"a": "queued"}):
        root = parse(apply_status(layout, statuses, BASE))
        for node_id, group in nodes(root).items():
            name = node_id.removeprefix("step-")
            if statuses and name in statuses:
                continue
            assert group.get("class") == "node step"
            assert status_text(group) == ("retries: 2" if name == "load" else "")
    assert "st-none" not in apply_status(layout, None, BASE)


def test_it_marks_an_unknown_status_without_putting_it_in_the_class(fanout_layout):
    root = parse(apply_status(fanout_layout, {"a": 'x" onload="evil()'}, BASE))
    group = nodes(root)["step-a"]
    assert group.get("class") == "node step st-unknown"
    assert status_text(group) == 'x" onload="evil()'


def test_it_reuses_the_layout_so_statuses_never_move_anything(fanout_layout, monkeypatch):
    def no_graphviz(*args, **kwargs):
        raise AssertionError("apply_status must not lay anything out")

    monkeypatch.setattr(dag_svg, "render_layout", no_graphviz)
    monkeypatch.setattr(pygraphviz.AGraph, "draw", no_graphviz)
    monkeypatch.setattr(pygraphviz.AGraph, "layout", no_graphviz)
    first = apply_status(fanout_layout, {"load": "succeeded", "a": "running"}, BASE)
    second = apply_status(fanout_layout, {"load": "failed", "a": "upstream_failed", "b": "cancelled"}, BASE)
    assert first != second
    assert 'class="node step st-succeeded"' in first and 'class="node step st-failed"' in second
    assert geometry(first) == geometry(second) == geometry(fanout_layout)
    assert len(geometry(first)) > 20


def test_it_escapes_user_text_from_docs():
    docs = {
        "load": '<script>alert(1)</script> "quoted" & \'single\' — ünïcode \\N @@BASE@@ a@b.c',
        "a": "&amp; stays literal <b>bold</b>",
    }
    svg = apply_status(render_layout(snapshot(FANOUT["edges"], docs=docs)), {"load": "failed"}, BASE)
    assert "<script" not in svg and "<b>" not in svg
    root = parse(svg)  # still well-formed
    titles = {g.get("id"): next(g.iter(f"{SVG}a")).get(XLINK_TITLE) for g in nodes(root).values()}
    assert titles["step-load"] == docs["load"]  # round-trips exactly: Graphviz never saw it
    assert titles["step-a"] == docs["a"]
    assert next(nodes(root)["step-load"].iter(f"{SVG}a")).get(XLINK_HREF) == f"{BASE}load/"


def test_it_escapes_the_base_url(fanout_layout):
    svg = apply_status(fanout_layout, None, '/runs/1/?a=1&b="2"/')
    assert 'xlink:href="/runs/1/?a=1&amp;b=&quot;2&quot;/load/"' in svg
    assert next(nodes(parse(svg))["step-load"].iter(f"{SVG}a")).get(XLINK_HREF) == '/runs/1/?a=1&b="2"/load/'


def test_it_lays_out_fan_out_and_fan_in_in_ranks(fanout_layout):
    root = parse(fanout_layout)

    def status_y(name):  # y of the status line: the same within a rank
        return float(next(t for t in nodes(root)[f"step-{name}"].iter(f"{SVG}text") if t.get("class") == "status").get("y"))

    assert status_y("load") < status_y("a") == status_y("b") == status_y("c") < status_y("merge")
    xs = {float(next(nodes(root)[f"step-{n}"].iter(f"{SVG}text")).get("x")) for n in "abc"}
    assert len(xs) == 3  # side by side


def test_it_reserves_room_for_the_widest_status_label():
    def width(label):
        agraph = pygraphviz.AGraph()
        agraph.add_node("n", label=label, shape="plaintext", fontname=dag_svg._FONT, fontsize=dag_svg._FONT_SIZE)
        return float(re.search(r'<svg width="([\d.]+)pt', agraph.draw(format="svg", prog="dot").decode())[1])

    assert all(width(dag_svg._SLOT) >= width(label) for label in STATUS_LABELS.values())


def test_it_is_large_above_200_steps():
    assert not is_large(big_snapshot(200))
    assert is_large(big_snapshot(201))


def test_it_lays_out_and_applies_status_to_1000_steps():
    graph = big_snapshot(1000)
    assert len(graph["edges"]) > dag_svg._FAST_EDGES  # takes the fast-options path
    started = time.perf_counter()
    layout = render_layout(graph)
    laid_out = time.perf_counter()
    statuses = {s["name"]: list(STATUS_LABELS)[i % len(STATUS_LABELS)] for i, s in enumerate(graph["steps"])}
    svg = apply_status(layout, statuses, BASE)
    applied = time.perf_counter()
    print(f"\n1000 steps, {len(graph['edges'])} edges: layout {laid_out - started:.2f} s, "
          f"apply_status {(applied - laid_out) * 1000:.1f} ms, {len(svg) // 1024} KiB")
    root = parse(svg)
    found = nodes(root)
    assert len(found) == 1000
    assert found["step-s999"].get("class") == f"node step st-{statuses['s999']}"
    assert status_text(found["step-s7"]) == STATUS_LABELS[statuses["s7"]]
    assert sum(1 for g in root.iter(f"{SVG}g") if g.get("class") == "edge") == len(graph["edges"])
