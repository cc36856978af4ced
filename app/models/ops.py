"""Running unattended: schedules, the slots they started, paused pipelines."""

from django.conf import settings
from django.db import models
from django.urls import reverse


class Overlap(models.TextChoices):
    SKIP = "skip", "skip the slot"
    QUEUE = "queue", "start it when the previous run finishes"
    ALLOW = "allow", "start it anyway"


class Schedule(models.Model):
    """When a pipeline runs on its own: a cron expression in a time zone, with a parameter
    set (or the defaults), an optional parameter that receives the slot, and what to do
    when the previous scheduled run is still going (app.ops.scheduler)."""

    pipeline_name = models.CharField(max_length=100)
    name = models.CharField(max_length=100, help_text="What the schedule is for, e.g. nightly retrain")
    cron = models.CharField(max_length=100, help_text="Minute hour day-of-month month day-of-week, e.g. 30 2 * * *")
    timezone = models.CharField(max_length=64, default="UTC", help_text="The time zone the cron expression is read in")
    parameter_set = models.ForeignKey(
        "ParameterSet", null=True, blank=True, on_delete=models.PROTECT, related_name="schedules",
        help_text="Run with this set's latest revision; empty: the pipeline's defaults",
    )
    slot_param = models.CharField(
        max_length=100, blank=True,
        help_text="A parameter that receives the slot (a date parameter its date, a text parameter its time)",
    )
    overlap = models.CharField(max_length=10, choices=Overlap.choices, default=Overlap.SKIP)
    tags = models.JSONField(default=list, blank=True, help_text="Tags the runs it starts get")
    enabled = models.BooleanField(default=True)
    # The latest slot handled (started, skipped or waiting); slots after it are due.
    last_slot = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pipeline_name", "name"]
        constraints = [models.UniqueConstraint(fields=["pipeline_name", "name"], name="schedule_unique_name")]

    def __str__(self):
        return f"{self.pipeline_name} / {self.name}"

    def get_absolute_url(self):
        return reverse("schedule_detail", args=[self.pk])


class SlotOutcome(models.TextChoices):
    STARTED = "started", "started"
    SKIPPED = "skipped", "skipped: the previous run was still going"
    WAITING = "waiting", "waiting for the previous run"
    PAUSED = "paused", "not started: the pipeline was paused"
    FAILED = "failed", "could not start"


class ScheduledSlot(models.Model):
    """One slot of a schedule that came due, and what became of it. Unique per schedule and
    slot: however many workers tick at once, a slot starts at most one run."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="slots")
    slot = models.DateTimeField()
    outcome = models.CharField(max_length=20, choices=SlotOutcome.choices)
    run = models.OneToOneField("Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="scheduled_slot")
    # A catch-up stands for the slots missed while nothing ticked (the site was down).
    missed = models.PositiveIntegerField(default=0, help_text="Earlier slots this one stands for (a catch-up)")
    message = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-slot"]
        constraints = [models.UniqueConstraint(fields=["schedule", "slot"], name="slot_once_per_schedule")]

    def __str__(self):
        return f"{self.schedule} at {self.slot:%Y-%m-%d %H:%M} UTC"

    @property
    def is_catch_up(self):
        return self.missed > 0


class PipelineState(models.Model):
    """An operator's switch on a pipeline: paused, its schedules start nothing."""

    pipeline_name = models.CharField(max_length=100, unique=True)
    paused = models.BooleanField(default=False)
    reason = models.CharField(max_length=200, blank=True)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    changed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.pipeline_name}: {'paused' if self.paused else 'active'}"


class Backfill(models.Model):
    """Every slot of a schedule in a past range, run at most `max_parallel` at a time, each
    with its own slot passed as the schedule's slot parameter (app.ops.backfills)."""

    class State(models.TextChoices):
        RUNNING = "running", "running"
        DONE = "done", "done"
        CANCELLED = "cancelled", "cancelled"

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="backfills")
    start = models.DateTimeField(help_text="The first slot at or after this")
    end = models.DateTimeField(help_text="The last slot at or before this")
    max_parallel = models.PositiveIntegerField(default=2)
    state = models.CharField(max_length=20, choices=State.choices, default=State.RUNNING)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"backfill #{self.pk} of {self.schedule}"

    def get_absolute_url(self):
        return reverse("backfill_detail", args=[self.pk])

    @property
    def pipeline_name(self):
        return self.schedule.pipeline_name


class BackfillSlot(models.Model):
    """One slot of a backfill: waiting for its turn, or the run it started (the latest, after
    a retry of a failed one)."""

    backfill = models.ForeignKey(Backfill, on_delete=models.CASCADE, related_name="slots")
    slot = models.DateTimeField()
    run = models.ForeignKey("Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    cancelled = models.BooleanField(default=False)
    message = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["backfill_id", "slot"]
        constraints = [models.UniqueConstraint(fields=["backfill", "slot"], name="backfill_slot_once")]

    def __str__(self):
        return f"{self.backfill} at {self.slot:%Y-%m-%d %H:%M} UTC"


class ChannelKind(models.TextChoices):
    EMAIL = "email", "email"
    APPRISE = "apprise", "chat or webhook (an Apprise URL)"


class AlertChannel(models.Model):
    """Where alerts go: email addresses (Django's email settings), or any chat or webhook
    target Apprise knows (slack://…, msteams://…, discord://…, json://host/path …)."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=ChannelKind.choices, default=ChannelKind.EMAIL)
    target = models.CharField(max_length=1000, help_text="Email addresses, comma-separated; or one Apprise URL")
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("alert_list")

    @property
    def shown_target(self):
        """The target without what looks like a secret (a webhook's token, a password)."""
        if self.kind == ChannelKind.EMAIL:
            return self.target
        scheme, _, rest = self.target.partition("://")
        host = rest.split("/")[0].split("@")[-1]
        return f"{scheme}://{host}/…" if rest else self.target


class Condition(models.TextChoices):
    RUN_FAILED = "run_failed", "a pipeline's latest run failed"
    SCHEDULE_LATE = "schedule_late", "a scheduled run did not succeed within the grace period"
    NO_WORKER = "no_worker", "no live worker"
    QUEUED_LONG = "queued_long", "steps waiting in the queue too long"
    MODEL_ERRORS = "model_errors", "a live model's error rate is above a threshold (%)"
    MODEL_LATENCY = "model_latency", "a live model's p95 latency is above a threshold (ms)"
    MODEL_DRIFT = "model_drift", "a live model's input drift (PSI) is above a threshold"
    MODEL_SILENT = "model_silent", "a live model has had no traffic"


class AlertRule(models.Model):
    """What opens an incident, and whom it tells (app.ops.alerts)."""

    name = models.CharField(max_length=100, unique=True)
    condition = models.CharField(max_length=20, choices=Condition.choices)
    pipeline_name = models.CharField(max_length=100, blank=True, help_text="Empty: every pipeline")
    model_name = models.CharField(max_length=100, blank=True, help_text="Model conditions: empty means every live model")
    threshold = models.FloatField(null=True, blank=True, help_text="Model conditions: the error rate (%), p95 latency (ms) or PSI above which it holds")
    minutes = models.PositiveIntegerField(default=10, help_text="How long the condition must hold (a late run's grace period)")
    remind_hours = models.PositiveIntegerField(default=24, help_text="Remind while the incident is open and not acknowledged; 0: never")
    channels = models.ManyToManyField(AlertChannel, related_name="rules")
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("alert_list")


class CloseReason(models.TextChoices):
    RECOVERED = "recovered", "recovered"
    RULE_OFF = "rule_off", "closed: its rule was turned off"


class Incident(models.Model):
    """A condition that holds: opened once (one message), open while it holds (reminders at
    most every remind_hours unless acknowledged), closed with a recovery message."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="incidents")
    subject = models.CharField(max_length=200, help_text="What it is about: a pipeline, a schedule, the workers")
    summary = models.CharField(max_length=300)
    detail = models.CharField(max_length=500, blank=True, help_text="The last error's last line")
    link = models.CharField(max_length=300, blank=True)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_because = models.CharField(max_length=20, choices=CloseReason.choices, blank=True)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True, help_text="The last message about it (opened or reminder)")

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "subject"], condition=models.Q(closed_at__isnull=True),
                                    name="incident_one_open_per_subject"),
        ]

    def __str__(self):
        return f"{self.rule}: {self.subject}"

    def get_absolute_url(self):
        return reverse("incident_detail", args=[self.pk])

    @property
    def is_open(self):
        return self.closed_at is None


class DeliveryEvent(models.TextChoices):
    OPENED = "opened", "opened"
    REMINDER = "reminder", "reminder"
    RECOVERED = "recovered", "recovered"
    TEST = "test", "test"


class Delivery(models.Model):
    """One message to one channel, tried until sent (with backoff) or given up; every try's
    outcome is kept (`attempts`, `last_error`)."""

    class State(models.TextChoices):
        PENDING = "pending", "waiting to be sent"
        SENT = "sent", "sent"
        FAILED = "failed", "given up"

    incident = models.ForeignKey(Incident, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=20, choices=DeliveryEvent.choices)
    title = models.CharField(max_length=300)
    body = models.TextField()
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_try_at = models.DateTimeField()
    last_error = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["state", "next_try_at"], name="delivery_due_idx")]

    def __str__(self):
        return f"{self.get_event_display()} to {self.channel}"
