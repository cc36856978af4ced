from datetime import timedelta

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from app import dag_svg


class PipelineSnapshot(models.Model):
    """The DAG a run ran: steps, edges, docstrings, sources. Shared by every run of the same
    code, so history and its pictures survive later code changes."""

    pipeline_name = models.CharField(max_length=100)
    source_hash = models.CharField(max_length=64)
    graph = models.JSONField()
    # Graphviz layout with status placeholders (app.dag_svg); filled once, off the hot path.
    layout_svg = models.TextField(blank=True)
    # dag_svg.LAYOUT_VERSION the stored layout was made with; an older one is made again.
    layout_version = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["pipeline_name", "source_hash"], name="snapshot_unique_hash")
        ]

    def __str__(self):
        return f"{self.pipeline_name}@{self.source_hash[:8]}"

    @property
    def steps(self):
        return self.graph["steps"]

    def step(self, name):
        return next((s for s in self.graph["steps"] if s["name"] == name), None)

    @property
    def layout_is_slow(self):
        return dag_svg.is_large(self.graph)

    @property
    def current_layout(self) -> str | None:
        """The stored layout, unless it is missing or made by an older dag_svg."""
        if self.layout_svg and self.layout_version == dag_svg.LAYOUT_VERSION:
            return self.layout_svg
        return None

    def store_layout(self) -> str:
        """Run Graphviz once for this snapshot and keep the result."""
        if self.current_layout is None:
            self.layout_svg = dag_svg.render_layout(self.graph)
            self.layout_version = dag_svg.LAYOUT_VERSION
            PipelineSnapshot.objects.filter(pk=self.pk).update(
                layout_svg=self.layout_svg, layout_version=self.layout_version
            )
        return self.layout_svg


class Timed:
    """For rows with started_at and finished_at."""

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class Status(models.TextChoices):
    PENDING = "pending", "waiting"
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    RETRYING = "retrying", "retrying"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    UPSTREAM_FAILED = "upstream_failed", "upstream failed"
    CANCELLED = "cancelled", "cancelled"


UNFINISHED = (Status.PENDING, Status.QUEUED, Status.RUNNING, Status.RETRYING)
FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.UPSTREAM_FAILED, Status.CANCELLED)


class Run(Timed, models.Model):
    snapshot = models.ForeignKey(PipelineSnapshot, on_delete=models.PROTECT, related_name="runs")
    # Denormalised from the snapshot so the run list can filter by pipeline with one index.
    pipeline_name = models.CharField(max_length=100)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    params = models.JSONField(default=dict)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    trigger_source = models.CharField(max_length=20, default="web")  # web, cli, api, schedule
    parameter_revision = models.ForeignKey(
        "ParameterSetRevision", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs",
        help_text="The parameter set revision the parameters came from, if any",
    )
    # Retry from failure makes a new run: `retry_of` is the first run of the chain of attempts.
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")
    attempt = models.PositiveIntegerField(default=1)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    steps_total = models.PositiveIntegerField(default=0)
    # Kept in step with StepRun rows in the same transaction, so list pages and polls read
    # progress from the run row alone.
    steps_finished = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("operate", "Can trigger, retry and cancel runs")]
        indexes = [
            # run list filtered by pipeline, newest first
            models.Index(fields=["pipeline_name", "-id"], name="run_pipeline_idx"),
            # run list filtered by status; polls asking "is anything unfinished?"
            models.Index(fields=["status", "-id"], name="run_status_idx"),
        ]

    def __str__(self):
        return f"Run #{self.pk} of {self.pipeline_name}"

    def get_absolute_url(self):
        return reverse("run_detail", args=[self.pk])

    @property
    def is_finished(self):
        return self.status in FINISHED

    @property
    def waiting_for_worker(self):
        """Queued for a while with no step started: most likely no worker is running."""
        return self.status == Status.QUEUED and timezone.now() - self.created_at > timedelta(seconds=30)

    @property
    def progress_percent(self):
        return round(100 * self.steps_finished / self.steps_total) if self.steps_total else 0


class StepRun(Timed, models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="step_runs")
    step_name = models.CharField(max_length=100)
    position = models.PositiveIntegerField(help_text="Index in the snapshot's topological order")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempt = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid:thread that ran it")
    # Refreshed by the worker while the step runs; a stale one means the worker died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Set when the output was reused from an earlier attempt's run (retry from failure).
    reused_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    log = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True, help_text="One-line summary of the failure")
    output_path = models.CharField(max_length=500, blank=True, help_text="Relative to the artifact store")

    class Meta:
        ordering = ["run_id", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "step_name"], name="steprun_unique_step")]
        indexes = [
            # the watchdog looking for queued step runs whose task was lost
            models.Index(fields=["status", "queued_at"], name="steprun_status_queued_idx"),
            # the watchdog looking for running step runs whose worker died
            models.Index(fields=["status", "heartbeat_at"], name="steprun_status_heartbeat_idx"),
        ]

    def __str__(self):
        return f"{self.step_name} of run #{self.run_id}"

    def get_absolute_url(self):
        return reverse("run_step", args=[self.run_id, self.step_name])


class Metric(models.Model):
    step_run = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="metrics")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metrics")
    name = models.CharField(max_length=100)
    value = models.FloatField()
    logged_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.name}={self.value}"


class StepAttempt(Timed, models.Model):
    """One try of a step run; a step with retries has several. The step run holds the latest."""

    step_run = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    log = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["step_run_id", "number"]
        constraints = [models.UniqueConstraint(fields=["step_run", "number"], name="attempt_unique_number")]

    def __str__(self):
        return f"attempt {self.number} of {self.step_run}"


class ParameterSet(models.Model):
    """A named, revisioned set of parameter values for one pipeline."""

    pipeline_name = models.CharField(max_length=100)
    name = models.CharField(max_length=100)
    is_default = models.BooleanField(default=False)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pipeline_name", "-is_default", "name"]
        constraints = [
            models.UniqueConstraint(fields=["pipeline_name", "name"], name="paramset_unique_name"),
            models.UniqueConstraint(
                fields=["pipeline_name"], condition=models.Q(is_default=True), name="paramset_one_default"
            ),
        ]

    def __str__(self):
        return f"{self.pipeline_name} / {self.name}"

    def get_absolute_url(self):
        return reverse("paramset_detail", args=[self.pk])

    @property
    def latest(self):
        return self.revisions.order_by("-number").first()


class ParameterSetRevision(models.Model):
    """One saved state of a parameter set; every save makes a new one."""

    parameter_set = models.ForeignKey(ParameterSet, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    values = models.JSONField()
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["parameter_set_id", "-number"]
        constraints = [models.UniqueConstraint(fields=["parameter_set", "number"], name="revision_unique_number")]

    def __str__(self):
        return f"{self.parameter_set} r{self.number}"


class AuditAction(models.TextChoices):
    TRIGGER = "trigger", "started a run"
    RETRY = "retry", "retried from failure"
    RERUN = "rerun", "re-ran"
    CANCEL = "cancel", "cancelled a run"
    PARAMSET_CREATE = "paramset_create", "created a parameter set"
    PARAMSET_EDIT = "paramset_edit", "edited a parameter set"
    PARAMSET_ARCHIVE = "paramset_archive", "archived a parameter set"
    PARAMSET_DEFAULT = "paramset_default", "made a parameter set the default"
    DEPLOY = "deploy", "deployed a model"
    REDEPLOY = "redeploy", "redeployed a model"
    ROLLBACK = "rollback", "rolled back a model"
    PROMOTE = "promote", "auto-deployed a model"
    TOKEN_CREATE = "token_create", "created an API token"
    TOKEN_REVOKE = "token_revoke", "revoked an API token"


class AuditEvent(models.Model):
    """Who did what, when, to what. Written by app.audit.record; never edited."""

    at = models.DateTimeField(auto_now_add=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    username = models.CharField(max_length=150, blank=True, help_text="Kept if the user is deleted")
    action = models.CharField(max_length=30, choices=AuditAction.choices)
    pipeline_name = models.CharField(max_length=100, blank=True)
    target_type = models.CharField(max_length=50, blank=True)
    target_id = models.CharField(max_length=50, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    target_url = models.CharField(max_length=300, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # audit page filtered by user / action / pipeline, newest first
            models.Index(fields=["user", "-id"], name="audit_user_idx"),
            models.Index(fields=["action", "-id"], name="audit_action_idx"),
            models.Index(fields=["pipeline_name", "-id"], name="audit_pipeline_idx"),
        ]

    def __str__(self):
        return f"{self.username} {self.get_action_display()} {self.target_label}"


class WorkerHeartbeat(models.Model):
    """Last sign of life of each worker process, written by a periodic task (app.tasks)."""

    name = models.CharField(max_length=200, unique=True, help_text="host:pid")
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["-last_seen"]

    def __str__(self):
        return self.name


# --- Models: the registry, deployments, retrain-and-deploy, results, API tokens ---------


class RegisteredModel(models.Model):
    """A model name. Its versions are numbered 1, 2, 3 … from `latest_version`, a counter
    bumped under the row's lock, and `live` is the deployment serving predictions."""

    name = models.CharField(max_length=100, unique=True)
    pipeline_name = models.CharField(
        max_length=100, blank=True, help_text="The pipeline that registered the latest version; retraining runs it"
    )
    headline_metric = models.CharField(
        max_length=100, blank=True, help_text="The metric shown in lists (the first one registered, unless changed)"
    )
    latest_version = models.PositiveIntegerField(default=0)
    live = models.ForeignKey("Deployment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("model_detail", args=[self.name])


class ModelVersion(models.Model):
    """One registered model file, its metrics and where it came from (its lineage)."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    format = models.CharField(max_length=30, help_text="How the file is saved and loaded (app.model_formats)")
    file_path = models.CharField(max_length=500, help_text="Relative to the artifact store")
    file_size = models.PositiveBigIntegerField(default=0)
    n_features = models.PositiveIntegerField(null=True, blank=True, help_text="Features per instance, if the model says")
    metrics = models.JSONField(default=dict, blank=True)
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="model_versions")
    step_run = models.ForeignKey(StepRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="model_versions")
    pipeline_name = models.CharField(max_length=100, blank=True)
    params = models.JSONField(default=dict, blank=True, help_text="The run's parameters")
    snapshot = models.ForeignKey(PipelineSnapshot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model_id", "-version"]
        constraints = [models.UniqueConstraint(fields=["model", "version"], name="modelversion_unique_number")]

    def __str__(self):
        return f"{self.model.name} v{self.version}"

    def get_absolute_url(self):
        return reverse("model_version", args=[self.model.name, self.version])


class DeploymentKind(models.TextChoices):
    DEPLOY = "deploy", "deploy"
    REDEPLOY = "redeploy", "redeploy"
    ROLLBACK = "rollback", "rollback"
    PROMOTE = "promote", "auto-deploy"


class Deployment(models.Model):
    """A version going live. The production history of a model is its deployments: each was
    live from `deployed_at` until `retired_at` (None while it is live)."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="deployments")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployments")
    kind = models.CharField(max_length=20, choices=DeploymentKind.choices, default=DeploymentKind.DEPLOY)
    reason = models.CharField(max_length=200)
    deployed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    deployed_by_name = models.CharField(max_length=150, blank=True, help_text="Kept if the user is deleted")
    deployed_at = models.DateTimeField()
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # a model's production history, newest first
            models.Index(fields=["model", "-id"], name="deployment_model_idx"),
        ]

    def __str__(self):
        return f"{self.version} ({self.get_kind_display()} at {self.deployed_at:%Y-%m-%d %H:%M})"

    def get_absolute_url(self):
        return self.model.get_absolute_url()


class PromotionRule(models.TextChoices):
    AT_LEAST = "at_least", "deploy if metric ≥ live version's"
    AT_MOST = "at_most", "deploy if metric ≤ live version's"
    NEVER = "never", "never auto-deploy"


class Verdict(models.TextChoices):
    PENDING = "pending", "waiting for the run"
    PROMOTED = "promoted", "deployed"
    KEPT = "kept", "not deployed"


class Promotion(models.Model):
    """A retrain-and-deploy request: a training run and the rule deciding whether the version
    it registers goes live. Decided when the run finishes; the verdict keeps both numbers."""

    run = models.OneToOneField(Run, on_delete=models.CASCADE, related_name="promotion")
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="promotions")
    rule = models.CharField(max_length=20, choices=PromotionRule.choices)
    metric = models.CharField(max_length=100, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    verdict = models.CharField(max_length=20, choices=Verdict.choices, default=Verdict.PENDING)
    message = models.CharField(max_length=300, blank=True)
    candidate = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    candidate_value = models.FloatField(null=True, blank=True)
    live_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    live_value = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"retrain {self.model.name} in run #{self.run_id}: {self.get_verdict_display()}"

    @property
    def rule_text(self):
        """The rule in a few words: "deploy if accuracy ≥ live"."""
        if self.rule == PromotionRule.NEVER:
            return "never auto-deploy"
        return f"deploy if {self.metric} {'≥' if self.rule == PromotionRule.AT_LEAST else '≤'} live"


class ResultKind(models.TextChoices):
    TABLE = "table", "table"
    CONFUSION = "confusion", "confusion matrix"


class ResultTable(models.Model):
    """A small table a step attached to its run (and to the model version it registers)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="result_tables")
    step_run = models.ForeignKey(StepRun, on_delete=models.CASCADE, related_name="result_tables")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=ResultKind.choices)
    data = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.name} of run #{self.run_id}"


class ApiToken(models.Model):
    """A per-user secret for the prediction API. Only its SHA-256 digest is stored; the
    token is shown once, when it is created."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for")
    prefix = models.CharField(max_length=16, help_text="The first characters, to tell tokens apart")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "API token"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    def get_absolute_url(self):
        return reverse("token_list")
