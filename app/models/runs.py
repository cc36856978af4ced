"""Pipelines' history: snapshots, runs, step runs, metrics, parameter sets, the audit trail."""

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from django.utils import timezone

from app.models.fields import OrderedJSONField


class PipelineSnapshot(models.Model):
    """The DAG a run ran: steps, edges, docstrings, sources. Shared by every run of the same
    code, so history and its pictures survive later code changes."""

    pipeline_name = models.CharField(max_length=100)
    source_hash = models.CharField(max_length=64)
    graph = OrderedJSONField()
    # Graphviz layout with status placeholders (app.pipelines.dag_svg); filled once by
    # app.runs.tasks.layout_for, off the hot path.
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
    # A step whose condition said no (or whose upstream was skipped): not a failure.
    SKIPPED = "skipped", "skipped"
    # A step that holds no worker while others do its work: a map's items, a child run.
    AWAITING = "awaiting", "in progress"


UNFINISHED = (Status.PENDING, Status.QUEUED, Status.RUNNING, Status.RETRYING, Status.AWAITING)
FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.UPSTREAM_FAILED, Status.CANCELLED, Status.SKIPPED)
# What a run (not a step) can be: waiting, retrying and upstream failed are steps' only.
RUN_STATUSES = (Status.QUEUED, Status.RUNNING, Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)


class Run(Timed, models.Model):
    snapshot = models.ForeignKey(PipelineSnapshot, on_delete=models.PROTECT, related_name="runs")
    # Denormalised from the snapshot so the run list can filter by pipeline with one index.
    pipeline_name = models.CharField(max_length=100)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    params = OrderedJSONField(default=dict)
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
    # A re-run (the same or edited parameters, every step run again) names the run it re-runs.
    rerun_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns")
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    steps_total = models.PositiveIntegerField(default=0)
    # Kept in step with StepRun rows in the same transaction, so list pages and polls read
    # progress from the run row alone.
    steps_finished = models.PositiveIntegerField(default=0)
    # An operator's note on the run (editable on its page) and whether cached step outputs
    # may be reused (app.runs.cache): a run started with "ignore cache" runs every step.
    note = models.TextField(blank=True, max_length=2000)
    ignore_cache = models.BooleanField(default=False)
    # A child run started by a step of another run (a sub-pipeline): that step run.
    parent_step = models.ForeignKey(
        "StepRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="child_runs"
    )
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
            # a run page's re-runs and retries, on every poll: only the runs that have a source,
            # so the planner sees a selective index (SQLite's statistics on the plain foreign-key
            # index, NULL for nearly every run, make it scan the table instead)
            models.Index(fields=["rerun_of"], condition=models.Q(rerun_of__isnull=False), name="run_rerun_of_idx"),
            models.Index(fields=["retry_of"], condition=models.Q(retry_of__isnull=False), name="run_retry_of_idx"),
            models.Index(fields=["parent_step"], condition=models.Q(parent_step__isnull=False), name="run_parent_step_idx"),
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
    def children(self):
        """Its child runs (started by its sub-pipeline steps), oldest first."""
        return Run.objects.filter(parent_step__run=self).order_by("pk")

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
    # Since when the step waits for a worker whose loaded code is the run's (app.runs.engine).
    code_wait_since = models.DateTimeField(null=True, blank=True)
    # How many of its upstream steps have not succeeded yet; a step is queued when it reaches
    # 0, so finishing a step costs O(its successors), not O(its siblings) (wide fan-in).
    upstream_left = models.PositiveIntegerField(default=0)
    # The queue its tasks go to (the step's or pipeline's queue=, else "default").
    queue = models.CharField(max_length=50, default="default")
    # Set when the output was reused from an earlier attempt's run (retry from failure).
    reused_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    log = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True, help_text="One-line summary of the failure")
    output_path = models.CharField(max_length=500, blank=True, help_text="Relative to the artifact store")
    # A small output's pickle (at most STEP_OUTPUT_INLINE_BYTES) is kept here instead of a
    # file at output_path (app.artifacts.save_output). Named outputs: output_path names their
    # manifest (…/<step>.outputs), whose bytes are kept here too when it is small.
    output_inline = models.BinaryField(null=True, blank=True, editable=False)
    # An operator set the outcome by hand (app.runs.actions.mark_step): who, why and when.
    # A step marked succeeded this way has no output; its dependants receive None.
    marked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    marked_reason = models.CharField(max_length=500, blank=True)
    marked_at = models.DateTimeField(null=True, blank=True)
    # A mapped step (@p.map) is one step run (the node, map_index NULL) whose items are step
    # runs of their own named "<step>[<index>]", each with its own input, attempts and log.
    map_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="items")
    map_index = models.PositiveIntegerField(null=True, blank=True)
    items_total = models.PositiveIntegerField(default=0)
    items_left = models.PositiveIntegerField(default=0)
    items_failed = models.PositiveIntegerField(default=0)
    # An item's own input (its element of the mapped-over output), saved as outputs are.
    input_path = models.CharField(max_length=500, blank=True)
    input_inline = models.BinaryField(null=True, blank=True, editable=False)
    # How many of its upstream steps were skipped (conditions): it is skipped too, unless it
    # runs when any upstream succeeded (when_upstream="any").
    upstream_skipped = models.PositiveIntegerField(default=0)
    # Caching (app.runs.cache): the key of code and inputs, the hash of the saved output and
    # the parameters the step read, with their values.
    cache_key = models.CharField(max_length=64, blank=True)
    output_hash = models.CharField(max_length=64, blank=True)
    params_read = OrderedJSONField(null=True, blank=True)
    # Seconds spent loading inputs and saving outputs (the step's own time is the rest).
    load_seconds = models.FloatField(null=True, blank=True)
    save_seconds = models.FloatField(null=True, blank=True)
    # The concurrency pool the step takes a slot of (@p.step(pool=...)), and what a ready
    # step waits for when it cannot start yet (a pool slot, a run slot).
    pool = models.CharField(max_length=50, blank=True)
    waiting_for = models.CharField(max_length=200, blank=True)

    @property
    def items_done(self) -> int:
        """A mapped step's items that succeeded."""
        return self.items_total - self.items_left - self.items_failed

    @property
    def node_name(self) -> str:
        """The step's name in the pipeline (an item "score[3]" is of step "score")."""
        return self.step_name.partition("[")[0]

    class Meta:
        ordering = ["run_id", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "step_name"], name="steprun_unique_step")]
        indexes = [
            # a mapped step's items, in order (its page, gathering its results)
            models.Index(fields=["map_of", "map_index"], condition=models.Q(map_of__isnull=False), name="steprun_items_idx"),
            # a run's steps without the items of its mapped steps (the run page and its polls)
            models.Index(fields=["run", "position"], condition=models.Q(map_of__isnull=True), name="steprun_nodes_idx"),
            # a cached step's lookup of an earlier output
            models.Index(fields=["cache_key"], condition=~models.Q(cache_key=""), name="steprun_cache_key_idx"),
            # a pool's running steps, counted when one of its steps is claimed
            models.Index(fields=["pool", "status"], condition=~models.Q(pool=""), name="steprun_pool_idx"),
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
    attempt = models.PositiveIntegerField(default=1, help_text="The attempt of its step run that recorded it: only the recorded attempt's count")
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
    values = OrderedJSONField()
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
    STEP_MARK = "step_mark", "marked a step by hand"
    PARAMSET_CREATE = "paramset_create", "created a parameter set"
    PARAMSET_EDIT = "paramset_edit", "edited a parameter set"
    PARAMSET_ARCHIVE = "paramset_archive", "archived a parameter set"
    PARAMSET_DEFAULT = "paramset_default", "made a parameter set the default"
    DEPLOY = "deploy", "deployed a model"
    REDEPLOY = "redeploy", "redeployed a model"
    ROLLBACK = "rollback", "rolled back a model"
    PROMOTE = "promote", "auto-deployed a model"
    TRIAL_START = "trial_start", "started a shadow or canary"
    TRIAL_PROMOTE = "trial_promote", "promoted a shadow or canary"
    TRIAL_ABORT = "trial_abort", "aborted a shadow or canary"
    TOKEN_CREATE = "token_create", "created an API token"
    TOKEN_REVOKE = "token_revoke", "revoked an API token"
    LOGIN_LOCKED = "login_locked", "was locked out after failed logins"
    LOGIN_UNLOCK = "login_unlock", "unlocked a login"
    ADMIN_ADD = "admin_add", "added in the admin"
    ADMIN_CHANGE = "admin_change", "changed in the admin"
    ADMIN_DELETE = "admin_delete", "deleted in the admin"
    PRUNE = "prune", "pruned old runs"
    BACKUP = "backup", "backed up the site"
    RESTORE = "restore", "restored a backup"
    SCHEDULE_CREATE = "schedule_create", "created a schedule"
    SCHEDULE_EDIT = "schedule_edit", "edited a schedule"
    SCHEDULE_DELETE = "schedule_delete", "deleted a schedule"
    SCHEDULE_ON = "schedule_on", "turned a schedule on"
    SCHEDULE_OFF = "schedule_off", "turned a schedule off"
    BACKFILL_START = "backfill_start", "started a backfill"
    BACKFILL_CANCEL = "backfill_cancel", "cancelled a backfill"
    BACKFILL_RETRY = "backfill_retry", "retried a backfill's failed slots"
    ALERT_CHANNEL = "alert_channel", "changed an alert channel"
    ALERT_RULE = "alert_rule", "changed an alert rule"
    INCIDENT_ACK = "incident_ack", "acknowledged an incident"
    PIPELINE_PAUSE = "pipeline_pause", "paused a pipeline"
    PIPELINE_RESUME = "pipeline_resume", "resumed a pipeline"


class AuditEvent(models.Model):
    """Who did what, when, to what. Written by app.runs.audit.record; never edited."""

    at = models.DateTimeField(auto_now_add=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    username = models.CharField(max_length=150, blank=True, help_text="Kept if the user is deleted")
    action = models.CharField(max_length=30, choices=AuditAction.choices)
    pipeline_name = models.CharField(max_length=100, blank=True)
    target_type = models.CharField(max_length=50, blank=True)
    target_id = models.CharField(max_length=50, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    target_url = models.CharField(max_length=300, blank=True)
    details = OrderedJSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # audit page filtered by user (by username, which outlives the user) / action /
            # pipeline, newest first; also the list of usernames in the filter
            models.Index(fields=["username", "-id"], name="audit_username_idx"),
            models.Index(fields=["action", "-id"], name="audit_action_idx"),
            models.Index(fields=["pipeline_name", "-id"], name="audit_pipeline_idx"),
        ]

    def __str__(self):
        return f"{self.username} {self.get_action_display()} {self.target_label}"


class WorkerHeartbeat(models.Model):
    """Last sign of life of each worker process, written by a thread of that very process
    (app.runs.heartbeat) every STEP_HEARTBEAT_SECONDS."""

    name = models.CharField(max_length=200, unique=True, help_text="host:pid")
    last_seen = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    queue = models.CharField(max_length=50, default="default", help_text="The queue it serves")
    threads = models.PositiveIntegerField(default=0)
    stopping = models.BooleanField(default=False, help_text="Draining after SIGTERM: takes no new steps")
    code = OrderedJSONField(default=dict, blank=True, help_text="Code hash of each pipeline the worker has loaded")

    class Meta:
        ordering = ["-last_seen"]

    def __str__(self):
        return self.name


class Lease(models.Model):
    """Who does a piece of periodic work (the watchdog) for one period: a worker runs it only
    after moving `period` forward with a conditional UPDATE, so with any number of workers
    it runs once per period (app.runs.leases)."""

    name = models.CharField(max_length=100, unique=True)
    period = models.BigIntegerField(default=0, help_text="The last period it was taken for")
    holder = models.CharField(max_length=200, blank=True)
    taken_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True, help_text="When the work last ended well")
    # Why the work failed the last time it was done (the queue refused what it queued, the
    # disk is full …), shown on Home until it works again; empty when it worked.
    problem = models.CharField(max_length=500, blank=True)
    problem_since = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return self.name


class StoreMarker(models.Model):
    """The id of the artifact store this database's records point into (one row). The same
    id is an object in the store (app.artifacts `store-id`): a worker whose store does not
    hold it is on another machine's disk or another bucket, and stops at start
    (app.runs.store_check) instead of failing steps for missing files."""

    store_id = models.CharField(max_length=64)
    where = models.CharField(max_length=500, help_text="The store as the process that created the id saw it")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.store_id} ({self.where})"


class RunTag(models.Model):
    """A tag on a run (from the start form, the API, a schedule or `ctx.tag()`): the run
    list filters by them."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=50)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["run", "name"], name="runtag_unique_name")]
        indexes = [models.Index(fields=["name", "run"], name="runtag_name_idx")]

    def __str__(self):
        return self.name


class Pool(models.Model):
    """A named concurrency pool: at most `size` steps that name it (@p.step(pool=...)) run at
    once, over all workers (app.runs.admission). A pool no row names has one slot."""

    # How many slots a pool may have: the Pools page and the admin both check it (clean).
    SIZE_MIN, SIZE_MAX = 1, 1000

    name = models.CharField(max_length=50, unique=True)
    size = models.PositiveIntegerField(default=1)
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} ({self.size})"

    def get_absolute_url(self):
        return reverse("pool_list") + f"#pool-{self.name}"

    def clean(self):
        if self.size is not None and not self.SIZE_MIN <= self.size <= self.SIZE_MAX:
            raise ValidationError(
                {"size": f"A pool has {self.SIZE_MIN} to {self.SIZE_MAX:,} slots, not {self.size:,}."}
            )
