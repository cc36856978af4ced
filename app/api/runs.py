"""Pipelines and runs for other systems (CI jobs, upstream data pipelines, notebooks): list
pipelines with their parameters, start a run, read runs with their steps and metrics, cancel,
retry from failure, re-run, and read a step's log.

Parameters are read by the pipeline's own parser, as the run form reads them, so the errors
are the form's. Writes go through app.ops.operate, as the dashboard's do, inside
audit.through_token: the audit trail names the token."""

from datetime import datetime
from typing import Annotated

from django.http import Http404, StreamingHttpResponse
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from ninja import Field, Query, Router, Schema
from ninja import Status as Answer  # an answer with its status (not app.models.Status)
from ninja.errors import HttpError
from ninja.pagination import CursorPagination, paginate
from pydantic import BeforeValidator

from app import artifacts
from app.api import auth
from app.api.schemas import Error, Pipeline, RunDetail, RunSummary, Started, Trigger
from app.models import RUN_STATUSES, ParameterSet, PipelineState, Run, Status, StepRun
from app.ops import operate, scheduler
from app.pipelines.params import ParamError
from app.pipelines.registry import DEFAULT_QUEUE, registry
from app.runs import audit, engine
from app.runs import tags as run_tags

pipelines = Router(auth=auth.RUNS_READ)
router = Router(auth=auth.RUNS_READ)

READ_ERRORS = {code: Error for code in (401, 403, 404, 422, 503)}
WRITE_ERRORS = {code: Error for code in (400, 401, 403, 404, 409, 413, 422, 503)}


# --- pipelines -------------------------------------------------------------------------


def get_pipeline(name):
    pipe = registry.get(name)
    if pipe is None:
        raise Http404(str(engine.UnknownPipeline(name)))  # says why, and which pipelines there are
    return pipe


def pipeline_out(pipe, set_names, paused) -> dict:
    return {
        "name": pipe.name,
        "description": pipe.description,
        "params": [spec.as_dict() for spec in pipe.param_specs],
        "steps": [
            # Inputs are upstream too in snapshots older than inferred edges; a group or a named
            # output is not a step (its step is in `after`).
            {"name": s["name"],
             "upstream": sorted(set(s["after"]) | set(s["inputs"]) - set(pipe.groups()) - set(pipe.output_owners())),
             "queue": s["queue"] or DEFAULT_QUEUE}
            for s in pipe.snapshot()["steps"]
        ],
        "parameter_sets": set_names.get(pipe.name, []),
        "paused": pipe.name in paused,
        "url": reverse("pipeline_detail", args=[pipe.name]),
    }


def _sets_and_pauses():
    names = {}
    for pipeline_name, name in ParameterSet.objects.filter(archived_at__isnull=True).values_list("pipeline_name", "name"):
        names.setdefault(pipeline_name, []).append(name)
    return names, set(PipelineState.objects.filter(paused=True).values_list("pipeline_name", flat=True))


@pipelines.get("", response={200: list[Pipeline], **READ_ERRORS}, summary="List pipelines")
def list_pipelines(request):
    """Every pipeline that loads, with its parameters (type, default, bounds, choices), its
    steps and their dependencies. Scope: runs:read."""
    set_names, paused = _sets_and_pauses()
    return [pipeline_out(pipe, set_names, paused) for _, pipe in sorted(registry.pipelines().items())]


@pipelines.get("/{name}", response={200: Pipeline, **READ_ERRORS}, summary="Get a pipeline")
def get_one_pipeline(request, name: str):
    """One pipeline, as in the list. Scope: runs:read."""
    pipe = get_pipeline(name)
    set_names, paused = _sets_and_pauses()
    return pipeline_out(pipe, set_names, paused)


@pipelines.post("/{name}/runs", auth=auth.RUNS_WRITE, response={201: Started, **WRITE_ERRORS}, summary="Start a run")
def start_run(request, name: str, body: Trigger):
    """Start a run with `params` (each checked as the run form checks it; a 422 names every
    parameter at fault) on top of `parameter_set`'s values, if given, else the defaults, and
    with `tags` (a 422 names a bad one). A paused pipeline still runs what is started here,
    with a warning. Scope: runs:write."""
    pipe = get_pipeline(name)
    try:
        tags = run_tags.check(body.tags)
    except run_tags.TagError as exc:
        return Answer(422, {"error": f"the tags are not valid: {exc}", "errors": {"tags": str(exc)}})
    source_set = None
    values = {}
    if body.parameter_set is not None:
        source_set = ParameterSet.objects.filter(
            pipeline_name=pipe.name, name=body.parameter_set, archived_at__isnull=True
        ).first()
        if source_set is None:
            known = ", ".join(ParameterSet.objects.filter(pipeline_name=pipe.name, archived_at__isnull=True)
                              .values_list("name", flat=True)) or "none"
            raise HttpError(422, f"{pipe.name} has no parameter set named {body.parameter_set!r} (it has: {known})")
        values = dict(source_set.latest.values)
    values.update(body.params)
    try:
        params = pipe.parse_params(values)
    except ParamError as exc:
        return Answer(422, {"error": f"the parameters are not valid: {exc}", "errors": exc.errors})
    with audit.through_token(request.auth.name):
        run = operate.start(pipe.name, params, request.auth.user, parameter_set=source_set, source="api", tags=tags,
                             ignore_cache=body.ignore_cache)
    if run.start_error:
        return Answer(503, {"error": f"run #{run.pk} of {pipe.name} could not be started: the task queue refused it "
                              f"({run.start_error}); it is marked failed and will not run later"})
    warnings = []
    if scheduler.is_paused(pipe.name):
        warnings.append(f"{pipe.name} is paused: this run runs, but its schedules start nothing until it is resumed")
    return Answer(201, {"run": load_run(run.pk), "warnings": warnings})


# --- runs ----------------------------------------------------------------------------------


def known_query(request, *known):
    """A misspelt filter is an error, not a filter silently ignored (all runs instead of some)."""
    unknown = sorted(set(request.GET) - set(known))
    if unknown:
        raise HttpError(422, f"unknown query parameter {unknown[0]!r}: this endpoint takes {', '.join(known)}")


def _iso_datetime(value):
    """Only ISO 8601 text: pydantic alone would also read "0.5" as a Unix time."""
    if isinstance(value, str) and parse_datetime(value.replace("Z", "+00:00")) is not None:
        return value
    raise ValueError("use an ISO 8601 date and time, e.g. 2026-12-01T00:00:00Z")


IsoDatetime = Annotated[datetime, BeforeValidator(_iso_datetime)]


class RunFilters(Schema):
    pipeline: str | None = None
    status: Status | None = None
    trigger_source: str | None = Field(None, description="web, api, cli, schedule, retry or rerun")
    created_after: IsoDatetime | None = Field(None, description="Runs created at or after this time")
    created_before: IsoDatetime | None = Field(None, description="Runs created before this time")
    tag: list[str] = Field(
        default_factory=list,
        description="Runs with this tag; repeat it (?tag=a&tag=b) for runs with every one of them",
    )


def load_run(run_id) -> Run:
    try:
        return _runs().get(pk=run_id)
    except Run.DoesNotExist:
        raise Http404(f"there is no run #{run_id}") from None


def _runs():
    return Run.objects.select_related("triggered_by", "parameter_revision__parameter_set").prefetch_related("tags")


@router.get("", response={200: list[RunSummary], **READ_ERRORS}, summary="List runs")
@paginate(CursorPagination, ordering=("-id",), page_size=50, max_page_size=200)
def list_runs(request, filters: Query[RunFilters]):
    """Runs, newest first, 50 a page (`page_size` up to 200), filtered by pipeline, status,
    how they were started, when, and by tag (`tag` may be repeated: runs with every tag
    given). Follow `next` for the next page. Scope: runs:read."""
    known_query(request, *RunFilters.model_fields, "cursor", "page_size")
    runs = _runs()
    if filters.status is not None and filters.status not in RUN_STATUSES:
        raise HttpError(422, f"a run is never {filters.status.value}; its status is one of "
                             + ", ".join(s.value for s in RUN_STATUSES))
    for field, lookup in (("pipeline", "pipeline_name"), ("status", "status"), ("trigger_source", "trigger_source"),
                          ("created_after", "created_at__gte"), ("created_before", "created_at__lt")):
        value = getattr(filters, field)
        if value is not None:
            runs = runs.filter(**{lookup: value})
    for name in filters.tag:
        try:
            runs = runs.filter(tags__name=run_tags.normalise(name))
        except run_tags.TagError as exc:
            raise HttpError(422, f"the tag filter is not valid: {exc}") from None
    return runs


@router.get("/{int:run_id}", response={200: RunDetail, **READ_ERRORS}, summary="Get a run")
def get_run(request, run_id: int):
    """A run with its steps (status, attempt, times, error), the metrics its steps recorded
    and the model versions it registered. Scope: runs:read."""
    return load_run(run_id)


def _act(request, run_id, action) -> Run:
    run = load_run(run_id)
    with audit.through_token(request.auth.name):
        return action(run, request.auth.user)


@router.post("/{int:run_id}/cancel", auth=auth.RUNS_WRITE, response={200: RunDetail, **WRITE_ERRORS},
             summary="Cancel a run")
def cancel_run(request, run_id: int):
    """Steps that have not started never will; running steps are asked to stop. 409 once
    the run has finished or is already being cancelled. Scope: runs:write."""
    return load_run(_act(request, run_id, operate.cancel).pk)


def _started(new: Run):
    if new.start_error:
        return Answer(503, {"error": f"run #{new.pk} could not be started: the task queue refused it ({new.start_error})"})
    return Answer(201, load_run(new.pk))


@router.post("/{int:run_id}/retry", auth=auth.RUNS_WRITE, response={201: RunDetail, **WRITE_ERRORS},
             summary="Retry a run from failure")
def retry_run(request, run_id: int):
    """A new run that re-runs the failed, cancelled and skipped steps (and what follows them)
    and reuses the outputs of the rest. 409 unless the run failed or was cancelled, or when
    the pipeline's steps changed since. Scope: runs:write."""
    return _started(_act(request, run_id, operate.retry))


@router.post("/{int:run_id}/rerun", auth=auth.RUNS_WRITE, response={201: RunDetail, **WRITE_ERRORS},
             summary="Re-run a run")
def rerun_run(request, run_id: int):
    """A fresh run of the same pipeline with the same parameters. 409 while the run is
    still going. Scope: runs:write."""
    return _started(_act(request, run_id, operate.rerun))


LOG = {"responses": {200: {"description": "The log, as text", "content": {"text/plain": {"schema": {"type": "string"}}}}}}


@router.get("/{int:run_id}/steps/{step}/log", response={200: None, **READ_ERRORS}, openapi_extra=LOG,
            summary="Get a step's log")
def step_log(request, run_id: int, step: str, attempt: int | None = None):
    """What a step printed and logged, as text: its latest attempt, or `attempt`. While the
    step runs, as much as it has written. Scope: runs:read."""
    known_query(request, "attempt")
    run = load_run(run_id)
    try:
        step_run = run.step_runs.only("step_name", "attempt", "status").get(step_name=step)
    except StepRun.DoesNotExist:
        raise Http404(f"run #{run.pk} has no step named {step!r}") from None
    if step_run.attempt == 0:
        raise Http404(f"{step} of run #{run.pk} has not started ({step_run.status}), so it has no log yet")
    number = step_run.attempt if attempt is None else attempt
    if not 1 <= number <= step_run.attempt:
        raise Http404(f"{step} of run #{run.pk} has attempts 1 to {step_run.attempt}, not {number}")
    blocks = artifacts.read_log(artifacts.log_path(run.pk, step, number))
    response = StreamingHttpResponse(blocks or iter(()), content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "private, no-store"
    return response

