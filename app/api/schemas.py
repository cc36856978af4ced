"""What the JSON API takes and answers, as pydantic schemas: they validate requests and are
the OpenAPI schema that clients (and the API fuzz test) read."""

from datetime import datetime
from typing import Any

from ninja import Field, Schema

from app.models import ScheduledSlot
from app.runs import tags as run_tags
from app.tracking import results


class Error(Schema):
    """Every refusal: one sentence, and per field what is wrong with it where fields are at fault."""

    error: str = Field(description="What is wrong, in one sentence")
    errors: dict[str, str] | None = Field(None, description="Field (or parameter) name → what is wrong with it")


class Param(Schema):
    name: str
    type: str = Field(description="int, float, bool, str, date or choice")
    default: Any = Field(description="The default value; null when the parameter is required")
    required: bool
    optional: bool = Field(description="Whether null (empty) is a valid value")
    ge: Any = None
    le: Any = None
    choices: list[Any] | None = None
    help: str = ""
    max_length: int | None = None


class Step(Schema):
    name: str
    upstream: list[str] = Field(description="The steps it waits for")
    queue: str


class Pipeline(Schema):
    name: str
    description: str
    params: list[Param]
    steps: list[Step]
    parameter_sets: list[str] = Field(description="Names of its parameter sets that are not archived")
    paused: bool = Field(description="Paused pipelines' schedules start nothing; runs started here still run")
    url: str


class ParameterSetRef(Schema):
    name: str
    revision: int


class ScheduledBy(Schema):
    schedule: str
    slot: datetime
    catch_up: bool


class RunSummary(Schema):
    """A run, read from its row (the resolvers follow its relations)."""

    id: int
    pipeline: str = Field(alias="pipeline_name")
    status: str
    params: dict[str, Any]
    parameter_set: ParameterSetRef | None
    trigger_source: str = Field(description="web, api, cli, schedule, retry or rerun")
    triggered_by: str | None
    retry_of: int | None = Field(alias="retry_of_id", description="The first run of the chain this run retries")
    rerun_of: int | None = Field(alias="rerun_of_id", description="The run this run re-runs (all steps again)")
    attempt: int
    steps_total: int
    steps_finished: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    tags: list[str] = Field(description="Its tags, sorted")
    note: str = Field(description="An operator's note on the run (edited on its page); empty when there is none")
    url: str = Field(description="The run's page in the dashboard")

    @staticmethod
    def resolve_parameter_set(run):
        revision = run.parameter_revision
        return {"name": revision.parameter_set.name, "revision": revision.number} if revision else None

    @staticmethod
    def resolve_triggered_by(run):
        return run.triggered_by.get_username() if run.triggered_by else None

    @staticmethod
    def resolve_cancel_requested(run):
        return run.cancel_requested_at is not None

    @staticmethod
    def resolve_tags(run):
        return run_tags.names_of(run)

    @staticmethod
    def resolve_url(run):
        return run.get_absolute_url()


class Items(Schema):
    total: int
    done: int = Field(description="Items that succeeded")
    failed: int = Field(description="Items that failed or were cancelled")


class StepRun(Schema):
    name: str = Field(alias="step_name")
    status: str
    attempt: int
    queue: str
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    seconds: float | None = Field(description="How long its last attempt ran")
    error: str = Field(description="One line on why it failed; empty otherwise")
    reused_from_run: int | None = Field(description="The run whose output it reused (retry from failure)")
    items: Items | None = Field(description="A mapped step's items (each a step run of its own), once it has them")
    load_seconds: float | None = Field(description="Seconds its succeeded attempt spent loading its inputs")
    save_seconds: float | None = Field(description="Seconds its succeeded attempt spent saving its output(s)")

    @staticmethod
    def resolve_items(step_run):
        if not step_run.items_total:
            return None
        return {"total": step_run.items_total, "done": step_run.items_done, "failed": step_run.items_failed}

    @staticmethod
    def resolve_seconds(step_run):
        if step_run.started_at and step_run.finished_at:
            return (step_run.finished_at - step_run.started_at).total_seconds()
        return None

    @staticmethod
    def resolve_reused_from_run(step_run):
        return step_run.reused_from.run_id if step_run.reused_from_id else None


class Metric(Schema):
    step: str
    name: str
    value: float
    logged_at: datetime

    @staticmethod
    def resolve_step(metric):
        return metric.step_run.step_name


class ModelVersionRef(Schema):
    model: str
    version: int


class RunDetail(RunSummary):
    scheduled_by: ScheduledBy | None
    steps: list[StepRun]
    metrics: list[Metric] = Field(description="What its steps logged (only the attempt each step kept)")
    model_versions: list[ModelVersionRef]

    @staticmethod
    def resolve_scheduled_by(run):
        slot = ScheduledSlot.objects.filter(run=run).select_related("schedule").first()
        return {"schedule": slot.schedule.name, "slot": slot.slot, "catch_up": slot.is_catch_up} if slot else None

    @staticmethod
    def resolve_steps(run):
        return run.step_runs.filter(map_of__isnull=True).select_related("reused_from").defer("log", "traceback", "output_inline")

    @staticmethod
    def resolve_metrics(run):
        return results.of_recorded_attempts(run.metrics.all()).select_related("step_run").order_by("id")

    @staticmethod
    def resolve_model_versions(run):
        rows = run.model_versions.order_by("id").values_list("model__name", "version")
        return [{"model": name, "version": number} for name, number in rows]


class Trigger(Schema):
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Parameter values (JSON values or strings, read as the run form reads them); "
                    "parameters not given take the parameter set's value, else their default",
    )
    parameter_set: str | None = Field(None, description="Start from this parameter set's latest revision")
    tags: list[str] = Field(
        default_factory=list,
        description="Tags for the run: each 1 to 50 lowercase letters, digits and - _ . : = (e.g. env=prod, "
                    "team:ml; stripped and lower-cased first), at most 20",
    )
    ignore_cache: bool = Field(False, description="Run cached steps even when an earlier output could be reused")


class Started(Schema):
    run: RunDetail
    warnings: list[str]


class Prediction(Schema):
    id: str = Field(description="This request's id: send the true labels to /feedback with it")
    model: str
    version: int
    predictions: list[Any]


class Instances(Schema):
    instances: list[list[float]] = Field(description="Rows of features, as many as the model was trained on")


Label = float | int | str | bool


class FeedbackIn(Schema):
    """The true labels of one prediction, sent when they are known."""

    prediction_id: str = Field(description="The `id` of the prediction answer", json_schema_extra={"format": "uuid"})
    # Not nullable: give one of the two (the endpoint reads the body by hand, like predict).
    labels: list[Label] = Field(
        None, min_length=1,
        description="One true label per instance of that prediction, in their order: classes (strings, whole numbers, "
                    "booleans) when the model answers classes, numbers when it answers numbers",
    )
    label: Label = Field(None, description="Instead of `labels`, for a prediction of one instance")


class FeedbackTaken(Schema):
    prediction_id: str
    model: str
    version: int | None = Field(description="The version that answered the prediction (a canary's: the candidate)")
    labels: int = Field(description="How many labels were taken")
    compared: int = Field(description="How many were compared with the kept answer (fewer when only the first "
                                      "instances of a large sampled request were kept)")
    correct: int | None = Field(description="Classes: how many of those the answer had right")
    mean_absolute_error: float | None = Field(description="Numbers: the mean absolute error of those")
    at: datetime
