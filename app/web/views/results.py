"""Results for stakeholders: successful runs, their metrics and charts, the deployed
models, the DAGs. Nothing about failed, cancelled or running runs, and no logs, tracebacks or
lineage links into operator pages. Of the parameters, only those whose values differ between
the runs shown, since they are what tells those runs (and the lines of a chart) apart.

A chart draws one line per model: the model a run registered (the first, if it registered
several), or its pipeline when it registered none. `line_of_run` is that rule as one SQL
expression, so the runs query brings each run's line along, and the operator home counts runs
per day and line in one grouped query."""

import json
from dataclasses import dataclass, field

from django.db.models import F, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET

from app.models import Metric, ModelVersion, RegisteredModel, Run, Status
from app.pipelines.registry import registry
from app.tracking.results import of_recorded_attempts
from app.web import charts
from app.web.access import any_role
from app.web.views.models import results_of
from app.web.views.pipelines import conceptual_dag, get_pipeline_or_404

RECENT = 10
CHARTED = 50


def line_of_run():
    """The line of a chart a run is drawn on, for `Run.objects.annotate(line=…)`: the name of
    the first model it registered, else its pipeline's name (a lookup by the version's run_id
    index per run)."""
    first_model = ModelVersion.objects.filter(run=OuterRef("pk")).order_by("id").values("model__name")[:1]
    return Coalesce(Subquery(first_model), F("pipeline_name"))


def succeeded_runs(pipeline_name, limit):
    return list(
        Run.objects.filter(pipeline_name=pipeline_name, status=Status.SUCCEEDED)
        .only("pk", "pipeline_name", "params", "finished_at")
        .annotate(line=line_of_run())
        .order_by("-id")[:limit]
    )


def differing_params(pipe, runs) -> list[str]:
    """The parameters whose values differ between these runs: the pipeline's declared order,
    then any others (from older code) by name."""
    declared = [spec.name for spec in pipe.param_specs]
    names = declared + sorted({name for run in runs for name in run.params} - set(declared))

    def value(run, name):
        return json.dumps(run.params[name], sort_keys=True) if name in run.params else None

    return [name for name in names if len({value(run, name) for run in runs}) > 1]


@dataclass
class Row:
    run: Run
    values: list  # a value or None per metric name
    line: str  # the model it registered, or its pipeline
    params: list = field(default_factory=list)  # its values of the parameters that differ ("—": none)


def metric_table(runs):
    """(metric names, a Row per run) for these runs (from succeeded_runs)."""
    values = {}
    metrics = of_recorded_attempts(Metric.objects.filter(run__in=runs))
    for run_id, name, value in metrics.values_list("run_id", "name", "value").order_by("id"):
        values.setdefault(run_id, {})[name] = value  # the last value logged under a name wins
    names = sorted({name for per_run in values.values() for name in per_run})
    return names, [Row(run, [values.get(run.pk, {}).get(name) for name in names], run.line) for run in runs]


def with_params(pipe, rows) -> tuple[list[str], list[Row]]:
    """The parameters that differ between these rows' runs, and the rows with their values."""
    params = differing_params(pipe, [row.run for row in rows])
    return params, [Row(row.run, row.values, row.line, [row.run.params.get(p, "—") for p in params]) for row in rows]


def shows_models(rows) -> bool:
    """Whether any run registered a model (else the Model column would repeat the pipeline)."""
    return any(row.line != row.run.pipeline_name for row in rows)


@require_GET
@any_role
def results(request):
    rows = []
    for pipe in registry.pipelines().values():
        names, table = metric_table(succeeded_runs(pipe.name, 5))
        params, table = with_params(pipe, table)
        rows.append({"pipe": pipe, "names": names, "params": params, "table": table, "models": shows_models(table)})
    return render(request, "results/list.html", {"rows": rows, "deployed": deployed_models()})


def deployed_models(**filters):
    """Each model with a live version: the version, its metrics (headline first), since when."""
    deployed = []
    for model in RegisteredModel.objects.filter(live__isnull=False, **filters).select_related("live__version"):
        version = model.live.version
        metrics = sorted(version.metrics.items(), key=lambda item: item[0] != model.headline_metric)
        deployed.append({"model": model, "version": version, "since": model.live.deployed_at, "metrics": metrics})
    return deployed


@require_GET
@any_role
def model_results(request, name):
    """The deployed version of one model: metrics and result tables, nothing else."""
    found = deployed_models(name=name)
    if not found:
        raise Http404(f"No version of a model named “{name}” is deployed.")
    deployed = found[0]
    return render(request, "results/model.html", {**deployed, "tables": results_of(deployed["version"].step_run_id)})


@require_GET
@any_role
def pipeline_results(request, name):
    pipe = get_pipeline_or_404(name)
    runs = succeeded_runs(pipe.name, CHARTED)
    names, rows = metric_table(runs)
    charted_params, charted = with_params(pipe, rows)
    params, table = with_params(pipe, rows[:RECENT])
    return render(
        request,
        "results/pipeline.html",
        {
            "pipe": pipe,
            "names": names,
            "params": params,
            "table": table,
            "models": shows_models(table),
            "charts": metric_charts(names, charted_params, charted),
            "dag": conceptual_dag(pipe),
            "steps": pipe.snapshot()["steps"],
        },
    )


def metric_charts(names, params, rows):
    """(metric, chart) per metric: a line per model over the runs; a point's title names the
    run, its time and the parameters that differ between the charted runs."""
    order = sorted({row.line for row in rows})  # one style per line on every chart
    result = []
    for i, metric in enumerate(names):
        lines = {}
        for row in reversed(rows):  # oldest first
            value = row.values[i]
            if value is None:
                continue
            told = "".join(f" · {p}={v}" for p, v in zip(params, row.params))
            when = charts.time_label(row.run.finished_at)
            lines.setdefault(row.line, []).append(
                charts.Point(row.run.finished_at, value, f"{row.line} · run #{row.run.pk} · {when}{told}: {value:.4g}")
            )
        series = [charts.Series(line, lines[line], style=order.index(line)) for line in order if line in lines]
        result.append((metric, charts.line_chart(series, f"{metric} over the last {len(rows)} successful runs")))
    return result
