"""Results for stakeholders: successful runs, their metrics and charts, the deployed
models, the DAGs. Nothing about failed, cancelled or running runs, and no logs, parameters,
tracebacks or lineage links into operator pages."""

from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET

from app.models import Metric, RegisteredModel, Run, Status
from app.pipelines.registry import registry
from app.tracking.results import of_recorded_attempts
from app.web import charts
from app.web.access import any_role
from app.web.views.models import results_of
from app.web.views.pipelines import conceptual_dag, get_pipeline_or_404

RECENT = 10
CHARTED = 50


def succeeded_runs(pipeline_name, limit):
    return list(
        Run.objects.filter(pipeline_name=pipeline_name, status=Status.SUCCEEDED)
        .only("pk", "pipeline_name", "finished_at")
        .order_by("-id")[:limit]
    )


def metric_table(runs):
    """(metric names, rows of (run, [value or None per name])) for these runs."""
    values = {}
    metrics = of_recorded_attempts(Metric.objects.filter(run__in=runs))
    for run_id, name, value in metrics.values_list("run_id", "name", "value").order_by("id"):
        values.setdefault(run_id, {})[name] = value  # the last value logged under a name wins
    names = sorted({name for per_run in values.values() for name in per_run})
    return names, [(run, [values.get(run.pk, {}).get(name) for name in names]) for run in runs]


@require_GET
@any_role
def results(request):
    rows = []
    for pipe in registry.pipelines().values():
        runs = succeeded_runs(pipe.name, 5)
        names, table = metric_table(runs)
        rows.append({"pipe": pipe, "names": names, "table": table})
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
    names, table = metric_table(runs)
    oldest_first = table[::-1]
    metric_charts = [
        (metric, charts.line_chart(
            [(f"#{run.pk}", values[i]) for run, values in oldest_first if values[i] is not None],
            f"{metric} over the last {len(runs)} successful runs",
        ))
        for i, metric in enumerate(names)
    ]
    return render(
        request,
        "results/pipeline.html",
        {
            "pipe": pipe,
            "names": names,
            "table": table[:RECENT],
            "charts": metric_charts,
            "dag": conceptual_dag(pipe),
            "steps": pipe.snapshot()["steps"],
        },
    )
