"""The runs × steps grid of one pipeline (Airflow's grid view), and its duration trend.

Columns are the pipeline's last n runs, oldest on the left and newest on the right as in
Airflow; rows are the steps of its current definition in topological order, then the steps
only older runs have ("no longer defined"). Each cell is a step run's status: a coloured
square with the status icon of `dag_svg.STATUS_LABELS` (never colour alone), linking to the
step run's page.

Two queries whatever the size of the tables, never one per cell: the last n runs (the
`run_pipeline_idx` index: pipeline_name, -id, then a slice) and the step runs of those runs
as plain values (the unique (run, step_name) index), so logs, tracebacks and outputs are
never read.
"""

import datetime
from dataclasses import dataclass

from django.contrib import messages
from django.shortcuts import render
from django.views.decorators.http import require_GET

from app.models import Run, StepRun
from app.pipelines.dag_svg import STATUS_LABELS
from app.web import charts
from app.web.access import operator_required
from app.web.times import took
from app.web.views.pipelines import get_pipeline_or_404, number_or_none

DEFAULT_RUNS, MOST_RUNS = 25, 100


def icon_of(status: str) -> str:
    return STATUS_LABELS.get(status, "? " + status).split(" ", 1)[0]


def label_of(status: str) -> str:
    return STATUS_LABELS.get(status, status)


@dataclass
class Cell:
    """One step run, as the grid reads it."""

    run_id: int
    step_name: str
    status: str
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None

    @property
    def icon(self) -> str:
        return icon_of(self.status)

    @property
    def label(self) -> str:
        return label_of(self.status)

    @property
    def title(self) -> str:
        if self.finished_at is not None and self.started_at is not None:
            spent = f" in {took(self, 'precise')}"
        elif self.started_at is not None:
            spent = f" since {charts.time_label(self.started_at)}"
        else:
            spent = ""
        return f"{self.step_name} · run #{self.run_id}: {self.label}{spent}"


def runs_wanted(request) -> int:
    """How many runs `?n=` asks for (1 to MOST_RUNS); the default, with a message, for a bad n."""
    text = request.GET.get("n", "")
    if not text:
        return DEFAULT_RUNS
    n = number_or_none(text)
    if n is None or not 1 <= n <= MOST_RUNS:
        messages.error(request, f"“{text}” is not a number of runs from 1 to {MOST_RUNS}; showing the last {DEFAULT_RUNS}.")
        return DEFAULT_RUNS
    return n


def grid_rows(pipe, runs) -> list[dict]:
    """A row per step: {"name", "defined", "cells": [Cell or None per run]}."""
    cells = {
        (row["run_id"], row["step_name"]): Cell(**row)
        for row in StepRun.objects.filter(run_id__in=[run.pk for run in runs], map_of__isnull=True)
        .values("run_id", "step_name", "status", "started_at", "finished_at")
        .order_by()
    }
    defined = [step["name"] for step in pipe.snapshot()["steps"]]  # topological order
    gone = sorted({name for _run_id, name in cells} - set(defined))
    return [
        {"name": name, "defined": name in defined, "cells": [cells.get((run.pk, name)) for run in runs]}
        for name in defined + gone
    ]


def duration_trend(runs) -> str:
    bars = []
    for run in runs:
        seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else None
        spent = took(run) if seconds is not None else "not finished"
        bars.append(charts.Bar(
            f"#{run.pk}", seconds, run.status,
            f"run #{run.pk} · {charts.time_label(run.created_at)} · {label_of(run.status)} · {spent}",
        ))
    return charts.duration_chart(bars, f"How long each of the last {len(runs)} runs took")


@require_GET
@operator_required
def pipeline_grid(request, name):
    pipe = get_pipeline_or_404(name)
    n = runs_wanted(request)
    runs = list(
        Run.objects.filter(pipeline_name=pipe.name)
        .only("pk", "pipeline_name", "status", "created_at", "started_at", "finished_at")
        .order_by("-id")[:n]
    )[::-1]  # oldest on the left, as in Airflow
    for run in runs:
        run.icon, run.label = icon_of(run.status), label_of(run.status)
    return render(
        request,
        "pipelines/grid.html",
        {
            "pipe": pipe,
            "n": n,
            "runs": runs,
            "rows": grid_rows(pipe, runs),
            "trend": duration_trend(runs),
            "legend": [(status, *label.split(" ", 1)) for status, label in STATUS_LABELS.items()],
        },
    )
