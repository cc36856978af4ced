import functools
import logging
from collections import Counter

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import DatabaseError
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from app import artifacts
from app.models import UNFINISHED, Metric, Promotion, ResultTable, Run, Status, StepRun, WorkerHeartbeat
from app.ops import operate, scheduler
from app.pipelines import dag_svg
from app.runs import tasks, worker
from app.tracking import results
from app.web import filters, tables
from app.web.access import operator_required
from app.web.forms import ParamsForm
from app.web.views.pipelines import active_set, detail_context, get_pipeline_or_404

RUNS_PER_PAGE = 25
STOP_POLLING = 286  # htmx cancels a polling trigger on this status

log = logging.getLogger(__name__)


def get_run_or_404(run_id):
    try:
        return Run.objects.select_related(
            "snapshot", "triggered_by", "cancelled_by", "retry_of", "parameter_revision__parameter_set",
            "scheduled_slot__schedule",  # "Scheduled by …" on every poll, in the same query
        ).get(pk=run_id)
    except Run.DoesNotExist:
        raise Http404(f"There is no run #{run_id}.") from None


def _respond(request, template, context, polling):
    """Full page, or just the live partial for an htmx poll (286 once nothing is unfinished)."""
    if request.htmx:
        response = render(request, f"{template}#live", context, status=200 if polling else STOP_POLLING)
    else:
        response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def saves_a_run(back: str):
    """For a view that creates a run (trigger, retry, re-run): when the database or the disk
    refuses to save it (the disk is full, the database is gone), the operator gets a page
    saying so, status 503, instead of a server error. The run's transaction rolled back, so
    nothing of it exists and nothing starts later. `back` is the URL name of the page to go
    back to, reversed with the view's own arguments.

    The page is rendered here, not a redirect with a message: with a redirect, Django's
    session middleware may save the session (its last activity, at most once a minute), a
    write to the database that just failed, and answers 400 ("the session was deleted");
    it saves nothing on a 5xx answer."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, **kwargs):
            try:
                return view(request, **kwargs)
            except (DatabaseError, OSError) as exc:
                refused_by = "the database" if isinstance(exc, DatabaseError) else "the disk"
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.error("%s: the run could not be saved: %s refused it (%s)", request.path, refused_by, why)
                context = {"refused_by": refused_by, "why": why, "back": reverse(back, kwargs=kwargs)}
                return render(request, "runs/not_saved.html", context, status=503)

        return wrapper

    return decorate


@require_POST
@operator_required
@saves_a_run(back="pipeline_detail")
def trigger(request, name):
    pipe = get_pipeline_or_404(name)
    form = ParamsForm(pipe, request.POST)
    source_set = active_set(pipe, request.POST.get("from_set", ""))
    if not form.is_valid():
        return render(request, "pipelines/detail.html", detail_context(pipe, form, source_set), status=422)
    run = operate.start(
        pipe.name, form.cleaned_data["params"], request.user,
        parameter_set=source_set, save_to_set=bool(request.POST.get("save_to_set")),
        rerun_of=source_run(pipe, request.POST.get("from_run", "")),
    )
    if run.start_error:
        messages.error(request, f"Run #{run.pk} of {pipe.name} could not be started: the task queue refused it "
                                f"({run.start_error}). It is marked failed and will not run later; start it again "
                                "once the queue works.")
    else:
        messages.success(request, f"Run #{run.pk} of {pipe.name} started.")
        warn_if_paused(request, pipe.name)
    return redirect(run)


def source_run(pipe, run_id: str) -> Run | None:
    """The run of this pipeline the form's values came from (`from_run`), if it still exists."""
    if not run_id.isdigit():
        return None
    return Run.objects.filter(pk=int(run_id), pipeline_name=pipe.name).first()


def warn_if_paused(request, pipeline_name):
    """A run started by hand on a paused pipeline runs; the operator is reminded of the pause."""
    if scheduler.is_paused(pipeline_name):
        messages.warning(request, f"{pipeline_name} is paused: this run was started by hand and runs; "
                                  "its schedules start nothing until it is resumed.")


@require_GET
@operator_required
def run_list(request):
    found = filters.RunFilter(request.GET, queryset=filters.runs())
    page = Paginator(found.qs, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    polling = any(run.status in UNFINISHED for run in page)
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": found.form, "page": page, "polling": polling, "query": query.urlencode(),
               "columns": sort_links(request.GET)}
    return _respond(request, "runs/list.html", context, polling)


def sort_links(params) -> dict[str, dict]:
    """Per sortable column: the link that sorts by it (ascending, or descending when it is
    the current ascending sort) and its aria-sort state; the other filters are kept."""
    current = params.get("o", "")
    columns = {}
    for key, label in filters.SORTABLE.items():
        state = "ascending" if current == key else "descending" if current == f"-{key}" else "none"
        query = params.copy()
        query.pop("page", None)
        query["o"] = f"-{key}" if state == "ascending" else key
        columns[key] = {"label": label, "href": "?" + query.urlencode(), "state": state}
    return columns


def _live_context(run):
    step_runs = list(run.step_runs.defer("log", "traceback", "output_inline"))
    layout = tasks.layout_for(run.snapshot)
    statuses = {sr.step_name: sr.status for sr in step_runs}
    base_url = reverse("run_detail", args=[run.pk]) + "steps/"
    return {
        "run": run,
        "step_runs": step_runs,
        "dag": dag_svg.apply_status(layout, statuses, base_url) if layout else None,
        "metrics": results.of_recorded_attempts(Metric.objects.filter(run=run)).select_related("step_run").only(
            "name", "value", "logged_at", "step_run__step_name"
        ),
        "polling": not run.is_finished,
        # A large run's DAG is ~1.4 KB a step on every poll: poll it less often.
        "poll_every": "5s" if run.steps_total > dag_svg.LARGE_STEPS else "1s",
        "legend": dag_svg.STATUS_LABELS,
        "step_counts": step_counts(step_runs),
        "queues_without_worker": queues_without_worker(step_runs),
    }


def step_counts(step_runs) -> list[tuple[str, str, int]]:
    """(status, label, how many steps) for the statuses the run's steps are in, in the
    legend's order: what the progress bar alone cannot say (7 succeeded, 1 failed, 2 skipped)."""
    counts = Counter(sr.status for sr in step_runs)
    return [(status, Status(status).label, counts[status]) for status in dag_svg.STATUS_LABELS if counts[status]]


def queues_without_worker(step_runs) -> list[str]:
    """The queues that steps of this run wait on and that no live worker serves, while
    other workers are alive (with none alive at all, the page asks whether one runs)."""
    waiting = {sr.queue for sr in step_runs if sr.status in (Status.QUEUED, Status.RETRYING)}
    if not waiting:
        return []
    live = set(WorkerHeartbeat.objects.filter(
        last_seen__gte=timezone.now() - worker.dead_after(), stopping=False
    ).values_list("queue", flat=True))
    return sorted(waiting - live) if live else []


def results_context(run):
    """What a run produced besides outputs: model versions, result tables, a retrain verdict."""
    return {
        "model_versions": run.model_versions.select_related("model", "step_run").order_by("id"),
        "result_tables": tables.with_heatmaps(results.of_recorded_attempts(ResultTable.objects.filter(run=run))),
        "promotion": Promotion.objects.filter(run=run).select_related("model", "candidate", "live_version").first(),
    }


@require_GET
@operator_required
def run_detail(request, run_id):
    run = get_run_or_404(run_id)
    context = _live_context(run)
    if not request.htmx or not context["polling"]:
        # Logs are sent with the full page and once more with the final poll (out of band),
        # not on every poll.
        context["send_logs"] = True
        context["logged_steps"] = run.step_runs.exclude(log="", traceback="").only(
            "step_name", "status", "attempt", "log", "traceback", "error"
        )
        context.update(results_context(run))
    return _respond(request, "runs/detail.html", context, context["polling"])


def get_step_run_or_404(run, step) -> StepRun:
    try:
        return run.step_runs.get(step_name=step)
    except StepRun.DoesNotExist:
        raise Http404(f"Run #{run.pk} has no step named “{step}”.") from None


@require_GET
@operator_required
def run_step(request, run_id, step):
    run = get_run_or_404(run_id)
    step_run = get_step_run_or_404(run, step)
    snapshot = run.snapshot
    graph_steps = {s["name"]: s for s in snapshot.steps}
    log_file = artifacts.log_path(run.pk, step, step_run.attempt)
    if step_run.status == Status.RUNNING:
        step_run.log = artifacts.log_tail(log_file)  # live: read from the file being written
    attempts = list(step_run.attempts.all())
    for attempt in attempts:
        attempt.log_size = artifacts.log_size(artifacts.log_path(run.pk, step, attempt.number))
    log_size = artifacts.log_size(log_file) if step_run.attempt else None
    context = {
        "run": run,
        "step_run": step_run,
        "info": graph_steps.get(step, {}),
        "metrics": step_run.metrics.filter(attempt=step_run.attempt),
        "attempts": attempts,
        "log_size": log_size,
        "log_cut": bool(log_size) and log_size > len(step_run.log.encode()),
        "tail_lines": artifacts.TAIL_LINES,
        "polling": step_run.status in UNFINISHED,
    }
    return _respond(request, "runs/step.html", context, context["polling"])


@require_GET
@operator_required
def run_step_log(request, run_id, step, number):
    """The whole log of one attempt of a step run, as a text file."""
    run = get_run_or_404(run_id)
    step_run = get_step_run_or_404(run, step)
    if not 1 <= number <= step_run.attempt:
        raise Http404(f"{step_run} has no attempt {number}.")
    blocks = artifacts.read_log(artifacts.log_path(run.pk, step, number))  # one file, or a remote store's chunks
    if blocks is None:
        raise Http404(f"Attempt {number} of {step_run} printed and logged nothing.")
    response = StreamingHttpResponse(blocks, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-{step}-attempt-{number}.log"'
    response["Cache-Control"] = "private, no-store"
    return response
