from django.contrib import messages
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from app.models import ParameterSet, PipelineState, Run, Schedule
from app.ops import scheduler
from app.pipelines import dag_svg
from app.pipelines.registry import registry
from app.runs import engine, paramsets, tasks
from app.web.access import any_role, is_operator
from app.web.forms import ParamsForm, RunTagsForm


def get_pipeline_or_404(name):
    pipe = registry.get(name)
    if pipe is None:
        problems = registry.problems().get(name)
        if problems:
            raise Http404(f"Pipeline “{name}” has definition errors: " + "; ".join(problems))
        raise Http404(f"There is no pipeline named “{name}”.")
    return pipe


def conceptual_dag(pipe):
    """The pipeline's DAG picture (no statuses), or None while a large one is laid out."""
    snapshot = engine.snapshot_for(pipe)
    layout = tasks.layout_for(snapshot)
    if layout is None:
        return None
    return dag_svg.apply_status(layout, None, reverse("pipeline_detail", args=[pipe.name]) + "steps/")


@require_GET
@any_role
def pipeline_list(request):
    pipes = list(registry.pipelines().values())
    # Stakeholders see no run states (a failed run is not theirs to see).
    latest = {run.pipeline_name: run for run in latest_runs([p.name for p in pipes])} if is_operator(request.user) else {}
    paused = set(PipelineState.objects.filter(paused=True).values_list("pipeline_name", flat=True))
    rows = [{"pipeline": p, "latest": latest.get(p.name), "steps": len(p.steps), "paused": p.name in paused} for p in pipes]
    return render(
        request,
        "pipelines/list.html",
        {
            "rows": rows,
            "problems": registry.problems(),
            "import_errors": list(registry.import_errors.values()),
        },
    )


def latest_runs(names) -> list[Run]:
    """The newest run of each named pipeline that has one."""
    # One indexed lookup per pipeline (run_pipeline_idx); the number of pipelines is small.
    ids = []
    for name in names:
        run_id = Run.objects.filter(pipeline_name=name).order_by("-id").values_list("pk", flat=True).first()
        if run_id:
            ids.append(run_id)
    return list(Run.objects.filter(pk__in=ids).order_by("pipeline_name"))


def number_or_none(text: str) -> int | None:
    """An id from a query or form value; None for anything else (such as "²", a digit int() rejects)."""
    return int(text) if text.isascii() and text.isdecimal() else None


def active_set(pipe, set_id: str) -> ParameterSet | None:
    """The pipeline's unarchived parameter set with this id (as text from a form), if any."""
    return ParameterSet.objects.filter(pk=number_or_none(set_id), pipeline_name=pipe.name, archived_at=None).first()


def run_form(request, pipe):
    """The run form, pre-filled from `?set=<id>` or `?from_run=<id>` (its tags too), else
    the defaults; returns (form, the parameter set it came from or None, the tags form)."""
    source_set, initial, tags = None, {}, []
    set_id, run_id = request.GET.get("set", ""), request.GET.get("from_run", "")
    if set_id:
        source_set = active_set(pipe, set_id)
        if source_set is None:
            messages.error(request, f"{pipe.name} has no active parameter set #{set_id}; showing the defaults.")
        else:
            initial = ParamsForm.initial_from(source_set.latest.values)
    elif run_id:
        run = Run.objects.filter(pk=number_or_none(run_id), pipeline_name=pipe.name).first()
        if run is None:
            messages.error(request, f"{pipe.name} has no run #{run_id}; showing the defaults.")
        else:
            initial = ParamsForm.initial_from(run.params)
            tags = list(run.tags.values_list("name", flat=True))
    return ParamsForm(pipe, initial=initial), source_set, RunTagsForm(initial={"tags": tags})


def detail_context(pipe, form, source_set=None, tags_form=None):
    """What the pipeline page shows (also when the run form comes back with errors)."""
    sets = list(ParameterSet.objects.filter(pipeline_name=pipe.name, archived_at=None))
    default_set = next((s for s in sets if s.is_default), None)
    tags_form = tags_form or RunTagsForm()
    if not any(step.cache for step in pipe.steps.values()):
        tags_form.fields.pop("ignore_cache", None)  # nothing of this pipeline is cached
    return {
        "pipe": pipe,
        "params": pipe.param_specs,
        "form": form,
        "tags_form": tags_form,
        "sets": sets,
        "source_set": source_set,
        "source_problems": paramsets.problems(source_set) if source_set else {},
        "default_set": default_set,
        "default_problems": paramsets.problems(default_set) if default_set else {},
        "steps": pipe.snapshot()["steps"],
        "dag": conceptual_dag(pipe),
        "recent": Run.objects.filter(pipeline_name=pipe.name).select_related("triggered_by")[:10],
        "schedules": [
            {"schedule": s, "words": scheduler.describe(s.cron), "next": scheduler.next_slots(s, 1) if s.enabled else []}
            for s in Schedule.objects.filter(pipeline_name=pipe.name).select_related("parameter_set")
        ],
        "pause": PipelineState.objects.filter(pipeline_name=pipe.name, paused=True).select_related("changed_by").first(),
    }


@require_GET
@any_role
def pipeline_detail(request, name):
    pipe = get_pipeline_or_404(name)
    form, source_set, tags_form = run_form(request, pipe) if is_operator(request.user) else (None, None, None)
    return render(request, "pipelines/detail.html", detail_context(pipe, form, source_set, tags_form))


@require_GET
@any_role
def pipeline_step(request, name, step):
    pipe = get_pipeline_or_404(name)
    info = next((s for s in pipe.snapshot()["steps"] if s["name"] == step), None)
    if info is None:
        raise Http404(f"Pipeline “{name}” has no step named “{step}”.")
    graph = pipe.graph()
    return render(
        request,
        "pipelines/step.html",
        {
            "pipe": pipe,
            "step": info,
            "upstream": list(graph.predecessors(step)),
            "downstream": list(graph.successors(step)),
        },
    )
