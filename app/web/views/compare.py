"""Two runs side by side ("compare with…"): what each ran with and what it gave — pipeline,
status, who started it and when, duration, code, parameter set, every parameter, the metrics
of the recorded attempts and each step's duration — with what differs marked in words.

Runs of different pipelines may be compared: parameters, metrics and steps are lined up by
name. Nothing here polls: a run still going is compared as it is when the page is loaded.
"""

import dataclasses
import datetime
import re

from django import forms
from django.shortcuts import render
from django.utils.text import Truncator
from django.views.decorators.http import require_GET

from app.models import Metric, Run
from app.pipelines import graph
from app.tracking import results
from app.web.access import operator_required
from app.web.views.runs import get_run_or_404

RECENT_RUNS = 50  # offered in the picker for the other run
RUN_NUMBER = re.compile(r"#?([0-9]+)")


def _run_number(value: str, which: str) -> int:
    match = RUN_NUMBER.fullmatch(value.strip())
    if match is None:
        shown = Truncator(value).chars(40)
        raise forms.ValidationError(f"“{shown}” is not a run number: give {which} as a number, such as 12.")
    return int(match.group(1))


class CompareForm(forms.Form):
    """?a=<run>&b=<run>; b may be left out, and the page then asks for it."""

    a = forms.CharField(error_messages={"required": "Say which run to compare: give its number as a."})
    b = forms.CharField(required=False)

    def clean_a(self):
        return _run_number(self.cleaned_data["a"], "a")

    def clean_b(self):
        value = self.cleaned_data["b"]
        return _run_number(value, "b") if value.strip() else None

    def clean(self):
        a, b = self.cleaned_data.get("a"), self.cleaned_data.get("b")
        if a is not None and a == b:
            self.add_error("b", f"Run #{a} compared with itself shows no difference: pick another run.")
        return self.cleaned_data


@dataclasses.dataclass
class Length:
    """A length of time as the `took` filter reads a run or a step (started_at, finished_at),
    so that a difference is written in the same words as every duration on the site."""

    seconds: float

    @property
    def started_at(self):
        return datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)

    @property
    def finished_at(self):
        return self.started_at + datetime.timedelta(seconds=abs(self.seconds))

    @property
    def sign(self):
        if abs(self.seconds) < 0.0005:  # nothing that "0.000 s" could show
            return "±"
        return "+" if self.seconds > 0 else "−"


def difference(a, b) -> Length | None:
    """b's duration minus a's, when both have one."""
    if a is None or b is None or a.duration is None or b.duration is None:
        return None
    return Length((b.duration - a.duration).total_seconds())


@require_GET
@operator_required
def run_compare(request):
    if not request.GET:
        return render(request, "runs/compare.html", {"form": CompareForm()})
    form = CompareForm(request.GET)
    if not form.is_valid():
        a = get_run_or_404(form.cleaned_data["a"]) if "a" in form.cleaned_data else None
        return render(request, "runs/compare.html", picker_context(form, a), status=400)
    a = get_run_or_404(form.cleaned_data["a"])
    if form.cleaned_data["b"] is None:
        return render(request, "runs/compare.html", picker_context(form, a))
    b = get_run_or_404(form.cleaned_data["b"])
    return render(request, "runs/compare.html", comparison(a, b))


def picker_context(form, a: Run | None) -> dict:
    """The form to choose the other run: a's pipeline's most recent other runs, or any number."""
    recent = []
    if a is not None:
        recent = (
            Run.objects.filter(pipeline_name=a.pipeline_name).exclude(pk=a.pk)
            .select_related("parameter_revision__parameter_set")
            .only("status", "created_at", "parameter_revision__number", "parameter_revision__parameter_set__name")
            .order_by("-id")[:RECENT_RUNS]
        )
    return {"form": form, "a": a, "recent": recent}


def comparison(a: Run, b: Run) -> dict:
    order = step_order(a, b)
    return {
        "a": a,
        "b": b,
        "same_pipeline": a.pipeline_name == b.pipeline_name,
        "same_code": a.snapshot.source_hash == b.snapshot.source_hash,
        "same_set": _set_of(a) == _set_of(b),
        "same_status": a.status == b.status,
        "same_user": a.triggered_by_id == b.triggered_by_id and a.trigger_source == b.trigger_source,
        "run_difference": difference(a, b),
        "params": param_rows(a, b),
        "metrics": metric_rows(a, b, order),
        "steps": step_rows(a, b, order),
    }


def _set_of(run: Run):
    revision = run.parameter_revision
    return (revision.parameter_set_id, revision.number) if revision else None


def param_rows(a: Run, b: Run) -> list[dict]:
    """One row per parameter of either run: declared ones in the pipeline's order (a's code,
    then parameters only b's code declares), then any other recorded key."""
    declared = [spec["name"] for run in (a, b) for spec in run.snapshot.graph.get("params", [])]
    keys = list(dict.fromkeys([*declared, *a.params, *b.params]))
    rows = []
    for key in keys:
        in_a, in_b = key in a.params, key in b.params
        if not (in_a or in_b):
            continue  # declared by the code, recorded by neither run
        value_a, value_b = a.params.get(key), b.params.get(key)
        rows.append({
            "key": key, "a": value_a, "b": value_b, "in_a": in_a, "in_b": in_b,
            "differs": in_a != in_b or value_a != value_b,
        })
    return rows


def _metrics(run: Run) -> dict[tuple[str, str], dict]:
    """(step, metric name) → its last value and how many values were logged, for the
    recorded attempt of each step run (as the run page shows them)."""
    found = {}
    rows = results.of_recorded_attempts(Metric.objects.filter(run=run)).order_by("id").values_list(
        "step_run__step_name", "name", "value"
    )
    for step, name, value in rows:
        entry = found.setdefault((step, name), {"value": value, "count": 0})
        entry["value"] = value
        entry["count"] += 1
    return found


def metric_rows(a: Run, b: Run, step_order: list[str]) -> list[dict]:
    metrics_a, metrics_b = _metrics(a), _metrics(b)
    position = {name: i for i, name in enumerate(step_order)}
    keys = list(dict.fromkeys([*metrics_a, *metrics_b]))  # first logged first, within a step
    keys.sort(key=lambda key: position.get(key[0], len(position)))
    rows = []
    for step, name in keys:
        value_a, value_b = metrics_a.get((step, name)), metrics_b.get((step, name))
        row = {"step": step, "name": name, "values": (value_a, value_b), "delta": None, "delta_text": "",
               "relative_text": ""}
        if value_a is not None and value_b is not None:
            delta = value_b["value"] - value_a["value"]
            row.update(delta=delta, delta_text=_signed(f"{delta:+.4g}") if delta else "±0")
            if value_a["value"] and delta:
                row["relative_text"] = _signed(f"{100 * delta / abs(value_a['value']):+.1f} %")
        rows.append(row)
    return rows


def _signed(number: str) -> str:
    """A minus sign, as in the durations' differences, not a hyphen."""
    return number.replace("-", "−", 1) if number.startswith("-") else number


def _step_runs(run: Run) -> dict:
    step_runs = run.step_runs.filter(map_of__isnull=True).only("run_id", "step_name", "position", "status", "started_at", "finished_at",
                                   "reused_from_id")
    return {sr.step_name: sr for sr in step_runs}


def step_order(a: Run, b: Run) -> list[str]:
    """Every step of either run in a topological order of both DAGs together; when the two
    disagree (a step before another in a, after it in b), a's order, then b's other steps."""
    names_a = [step["name"] for step in a.snapshot.steps]
    names_b = [step["name"] for step in b.snapshot.steps]
    names = list(dict.fromkeys([*names_a, *names_b]))
    edges = [tuple(edge) for run in (a, b) for edge in run.snapshot.graph.get("edges", [])]
    both = graph.build(names, edges)
    return names if graph.find_cycle(both) else graph.topological_order(both)


def step_rows(a: Run, b: Run, order: list[str]) -> list[dict]:
    steps_a, steps_b = _step_runs(a), _step_runs(b)
    rows = []
    for name in order:
        sr_a, sr_b = steps_a.get(name), steps_b.get(name)
        rows.append({
            "name": name, "cells": ((a, sr_a), (b, sr_b)), "delta": difference(sr_a, sr_b),
            "differs": sr_a is None or sr_b is None or sr_a.status != sr_b.status,
        })
    return rows
