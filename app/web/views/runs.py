import functools
import json
import logging
from collections import Counter

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import DatabaseError
from django.db.models import Count, Max, prefetch_related_objects
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
from app.runs import actions, tasks, worker
from app.tracking import results
from app.web import filters, live, previews, tables
from app.web.access import operator_required
from app.web.forms import ParamsForm, RunTagsForm
from app.web.timeline import timeline
from app.web.views.pipelines import active_set, detail_context, get_pipeline_or_404

RUNS_PER_PAGE = 25
STOP_POLLING = 286  # htmx cancels a polling trigger on this status

log = logging.getLogger(__name__)


def get_run_or_404(run_id, defer=()):
    try:
        return Run.objects.select_related(
            "snapshot", "triggered_by", "cancelled_by", "retry_of", "parameter_revision__parameter_set",
            "scheduled_slot__schedule",  # "Scheduled by …" on every poll, in the same query
        ).defer(*defer).get(pk=run_id)
    except Run.DoesNotExist:
        raise Http404(f"There is no run #{run_id}.") from None


def respond_live(request, template, context, polling):
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
    tags_form = RunTagsForm(request.POST)
    source_set = active_set(pipe, request.POST.get("from_set", ""))
    if not all([form.is_valid(), tags_form.is_valid()]):  # both, so both show their errors
        return render(request, "pipelines/detail.html", detail_context(pipe, form, source_set, tags_form), status=422)
    run = operate.start(
        pipe.name, form.cleaned_data["params"], request.user,
        parameter_set=source_set, save_to_set=bool(request.POST.get("save_to_set")),
        rerun_of=source_run(pipe, request.POST.get("from_run", "")), tags=tags_form.cleaned_data["tags"],
        ignore_cache=tags_form.cleaned_data.get("ignore_cache", False),
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
    running = any(run.status in UNFINISHED for run in page)
    # The list always polls, so a run started elsewhere appears: often while one of its runs
    # is unfinished, slowly otherwise, and a poll answers 204 unless a row changed.
    version = live.digest(page.paginator.count, page.number, [
        (run.pk, run.status, run.steps_finished, run.started_at, run.finished_at, run.cancel_requested_at)
        for run in page
    ])
    if request.htmx and live.held(request) == version:
        return live.unchanged(version)
    # The rows' tags in one query, and only for an answer that shows them (not for a 204).
    prefetch_related_objects(page.object_list, "tags")
    query = request.GET.copy()
    query.pop("page", None)
    by_tag = query.copy()
    by_tag.pop("tag", None)  # a tag's badge filters by it, keeping the other filters
    context = {"form": found.form, "page": page, "polling": True, "poll_every": "2s" if running else "10s",
               "version": version, "query": query.urlencode(), "columns": sort_links(request.GET),
               "tag_query": by_tag.urlencode()}
    return respond_live(request, "runs/list.html", context, polling=True)


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


def steps_of(run):
    """A run's steps, without the items of its mapped steps (a mapped step's page lists them)."""
    return run.step_runs.filter(map_of__isnull=True)


def _items(status, total, left, failed):
    """What a poll compares of a mapped step's items: how many finished, how many failed."""
    return (total - left, failed) if total else None


def _map_labels(step_runs) -> dict:
    """The DAG's status line of each mapped step with items: ▶ 12/40 · 1 failed."""
    return {
        sr.step_name: dag_svg.map_label(sr.status, sr.items_done, sr.items_total, sr.items_failed)
        for sr in step_runs if sr.items_total
    }


def _live_context(run):
    step_runs = list(steps_of(run).select_related("marked_by").defer("log", "traceback", "output_inline"))
    layout = tasks.layout_for(run.snapshot)
    statuses = {sr.step_name: sr.status for sr in step_runs}
    base_url = reverse("run_detail", args=[run.pk]) + "steps/"
    rows = [
        (sr.status, sr.attempt, sr.queue, _items(sr.status, sr.items_total, sr.items_left, sr.items_failed),
         sr.waiting_for)
        for sr in step_runs
    ]
    return {
        "run": run,
        "step_runs": step_runs,
        "dag": dag_svg.apply_status(layout, statuses, base_url, _map_labels(step_runs)) if layout else None,
        "metrics": _metrics(run),
        "polling": not run.is_finished,
        "poll_every": "1s",
        "legend": dag_svg.STATUS_LABELS,
        "step_counts": step_counts(status for status, *_ in rows),
        "queues_without_worker": queues_without_worker(rows),
        "run_waits_for": run_waits_for(run, rows),
        "version": _version(run, rows, has_layout=layout is not None),
    }


def _metrics(run):
    return results.of_recorded_attempts(Metric.objects.filter(run=run)).select_related("step_run").only(
        "name", "value", "logged_at", "step_run__step_name"
    )


def _version(run, rows, has_layout: bool) -> str:
    """What the run page shows, named (app/web/live.py): whether it has the DAG picture,
    the summary's facts, the metrics, and each step's status and attempt."""
    # Two indexed lookups in one query: an OR of the two columns scans every run on SQLite.
    related = sorted(Run.objects.filter(rerun_of=run).order_by().values_list("pk", "status").union(
        Run.objects.filter(retry_of=run).order_by().values_list("pk", "status")))
    metrics = Metric.objects.filter(run=run).aggregate(n=Count("pk"), last=Max("pk"))
    facts = live.digest(
        run.status, run.steps_finished, run.steps_total, run.started_at, run.finished_at, run.cancel_requested_at,
        run.waiting_for_worker, related, queues_without_worker(rows), run_waits_for(run, rows),
    )
    summary = f"{'L' if has_layout else 'N'}{facts}-{live.digest(metrics['n'], metrics['last'])}"
    return live.run_version(summary, _step_codes(rows))


def _step_codes(rows) -> list[str]:
    """What a poll compares of each step: its status and attempt, a mapped step's items, and
    what a queued step waits for (a pool slot, a run slot)."""
    return [live.step_code(status, attempt, items, waiting if status == Status.QUEUED else "")
            for status, attempt, _, items, waiting in rows]


def run_waits_for(run, rows) -> str:
    """What a queued run waits for (a run slot: its pipeline's max_active_runs), as its first
    step waiting for something says it; "" when it waits for nothing in particular."""
    if run.status != Status.QUEUED:
        return ""
    return next((waiting for status, _, _, _, waiting in rows if status == Status.QUEUED and waiting), "")


def step_counts(statuses) -> list[tuple[str, str, int]]:
    """(status, label, how many steps) for the statuses the run's steps are in, in the
    legend's order: what the progress bar alone cannot say (7 succeeded, 1 failed, 2 skipped)."""
    counts = Counter(statuses)
    return [(status, Status(status).label, counts[status]) for status in dag_svg.STATUS_LABELS if counts[status]]


def queues_without_worker(rows) -> list[str]:
    """The queues that steps of this run wait on and that no live worker serves, while
    other workers are alive (with none alive at all, the page asks whether one runs).
    `rows` are (status, attempt, queue, items, waiting_for) of the run's steps (a mapped step
    awaiting its items waits on its queue too)."""
    waiting = {queue for status, _, queue, *_ in rows if status in (Status.QUEUED, Status.RETRYING, Status.AWAITING)}
    if not waiting:
        return []
    live_queues = set(WorkerHeartbeat.objects.filter(
        last_seen__gte=timezone.now() - worker.dead_after(), stopping=False
    ).values_list("queue", flat=True))
    return sorted(waiting - live_queues) if live_queues else []


def _poll_changes(request, run):
    """The answer to a poll of a running run's page that holds a readable version: 204 when
    nothing changed, else only what did, out of band (app/web/live.py). None when the page
    needs its whole live part (the version is unreadable, or the DAG picture just arrived)."""
    rows = [
        (status, attempt, queue, _items(status, *counts), waiting) for status, attempt, queue, waiting, *counts in
        steps_of(run).order_by("position").values_list("status", "attempt", "queue", "waiting_for", "items_total",
                                                        "items_left", "items_failed")
    ]
    has_layout = run.snapshot.layout_version == dag_svg.LAYOUT_VERSION
    version = _version(run, rows, has_layout)
    held = live.held(request)
    if held == version:
        return live.unchanged(version)
    summary, held_summary = version.partition("~")[0], held.partition("~")[0]
    positions = live.changed_steps(held, summary, _step_codes(rows))
    if positions is None:
        return None
    changed = list(steps_of(run).filter(position__in=positions).select_related("marked_by")
                   .defer("log", "traceback", "output_inline"))
    context = {
        "run": run,
        "changed": changed,
        "dag_update": json.dumps(
            {sr.step_name: [sr.status, _map_labels([sr]).get(sr.step_name) or dag_svg.STATUS_LABELS.get(sr.status, sr.status)]
             for sr in changed}
        ),
        "step_counts": step_counts(status for status, *_ in rows),
        "queues_without_worker": queues_without_worker(rows),
        "run_waits_for": run_waits_for(run, rows),
        "metrics": _metrics(run) if summary.partition("-")[2] != held_summary.partition("-")[2] else None,
        "polling": True,
        "oob": True,
    }
    response = render(request, "runs/_poll.html", context)
    response["HX-Reswap"] = "none"  # only the out-of-band parts are swapped
    response[live.HEADER] = version
    patch_vary_headers(response, ["HX-Request"])
    return response


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
    # A poll reads the DAG picture (~1.4 KB a step) only when it has to send it.
    run = get_run_or_404(run_id, defer=["snapshot__layout_svg", "snapshot__graph"])
    if request.htmx and not run.is_finished and live.held(request):
        answer = _poll_changes(request, run)
        if answer is not None:
            return answer
    context = _live_context(run)
    if not context["polling"]:
        context["timeline"] = timeline(run, context["step_runs"])  # while it runs: its own live page
    if not request.htmx or not context["polling"]:
        # Logs are sent with the full page and once more with the final poll (out of band),
        # not on every poll.
        context["send_logs"] = True
        context["logged_steps"] = steps_of(run).exclude(log="", traceback="").only(
            "step_name", "status", "attempt", "log", "traceback", "error"
        )
        context.update(results_context(run))
    return respond_live(request, "runs/detail.html", context, context["polling"])


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
    log_file = artifacts.log_path(run.pk, step, step_run.attempt)
    log_size = artifacts.log_size(log_file) if step_run.attempt else None
    # What the live part shows, named: a poll answers 204 while the step, its run and its
    # log are as the page has them (app/web/live.py).
    version = live.digest(
        step_run.status, step_run.attempt, step_run.started_at, step_run.finished_at, step_run.marked_at,
        step_run.error, log_size, step_run.metrics.filter(attempt=step_run.attempt).count(),
        run.status, run.cancel_requested_at, step_run.items_left, step_run.items_failed, request.GET.get("page"),
        request.GET.get("items"), step_run.waiting_for,
    )
    if request.htmx and live.held(request) == version and step_run.status in UNFINISHED:
        return live.unchanged(version)
    snapshot = run.snapshot
    graph_steps = {s["name"]: s for s in snapshot.steps}
    info = graph_steps.get(step_run.node_name, {})
    if step_run.status == Status.RUNNING:
        step_run.log = artifacts.log_tail(log_file)  # live: read from the file being written
    attempts = list(step_run.attempts.all())
    for attempt in attempts:
        attempt.log_size = artifacts.log_size(artifacts.log_path(run.pk, step, attempt.number))
    context = {
        "version": version,
        "run": run,
        "step_run": step_run,
        "info": info,
        "items": _items_page(request, step_run) if info.get("map_over") and step_run.map_of_id is None else None,
        "node": step_run.map_of if step_run.map_of_id else None,
        "metrics": step_run.metrics.filter(attempt=step_run.attempt),
        "attempts": attempts,
        "log_size": log_size,
        "log_cut": bool(log_size) and log_size > len(step_run.log.encode()),
        "tail_lines": artifacts.TAIL_LINES,
        "polling": step_run.status in UNFINISHED,
        "mark_outcomes": actions.mark_outcomes(step_run, run),
        # Read (unpickled) only for a step that succeeded: a finished step's page does not poll.
        "output": previews.of_step(step_run)
        if step_run.status == Status.SUCCEEDED and (step_run.map_of_id or not info.get("map_over")) else None,
        "model_versions": step_run.model_versions.filter(attempt=step_run.attempt).select_related("model")
        if step_run.status == Status.SUCCEEDED else (),
    }
    return respond_live(request, "runs/step.html", context, context["polling"])


ITEMS_PER_PAGE = 100
ITEM_FILTERS = {"all": None, "failed": [Status.FAILED, Status.CANCELLED], "unfinished": list(UNFINISHED),
                "succeeded": [Status.SUCCEEDED]}


def _items_page(request, node: StepRun) -> dict:
    """A mapped step's items, a page at a time, all or by status (?items=failed)."""
    shown = request.GET.get("items", "all")
    items = node.items.order_by("map_index").only(
        "run_id", "step_name", "map_index", "status", "attempt", "started_at", "finished_at", "error", "reused_from_id",
        "waiting_for",
    )
    if ITEM_FILTERS.get(shown):
        items = items.filter(status__in=ITEM_FILTERS[shown])
    elif shown not in ITEM_FILTERS:
        shown = "all"
    counts = Counter(node.items.values_list("status", flat=True))
    return {
        "page": Paginator(items, ITEMS_PER_PAGE).get_page(request.GET.get("page")),
        "shown": shown,
        "filters": [(key, sum(counts[s] for s in ITEM_FILTERS[key]) if ITEM_FILTERS[key] else node.items_total)
                    for key in ITEM_FILTERS],
    }


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
