"""Models: what happens to a model once it is live (app.mlmodels.monitoring and friends).

- `Prediction`: one row per prediction request (the prediction log), written off the request
  path in batches; a sampled few keep their inputs and outputs for drift and feedback.
- `PredictionMinute`: the log rolled up per version, role and minute (counts and a latency
  histogram), which the health charts read instead of millions of rows.
- `ReferenceProfile`: the training inputs of a version, summarised (no raw data kept).
- `DriftReport`: recent sampled inputs of a version compared with its reference profile.
- `Trial`: a candidate version in shadow or canary next to the live one.
- `Feedback`: the true labels of a prediction, sent back by the client.
"""

from django.conf import settings
from django.db import models
from django.urls import reverse

from app.models.mlmodels import ModelVersion, Promotion, RegisteredModel


class Role(models.TextChoices):
    """Which part a version played in answering a request."""

    LIVE = "live", "live"
    CANARY = "canary", "canary"
    SHADOW = "shadow", "shadow"


class Prediction(models.Model):
    """One prediction request and its outcome. `uid` is the id the answer gives the client
    (feedback names it). Shadow rows are the candidate's answer to a copy of a live request,
    never returned: `pair` is the live request's uid and `agreement` the share of instances
    on which both versions gave the same answer."""

    id = models.BigAutoField(primary_key=True)
    uid = models.UUIDField(unique=True)
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="predictions")
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="predictions")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.LIVE)
    at = models.DateTimeField()
    latency_ms = models.FloatField()
    status = models.PositiveSmallIntegerField()
    n_instances = models.PositiveIntegerField(default=0)
    token_name = models.CharField(max_length=100, blank=True)
    error = models.CharField(max_length=300, blank=True)
    sampled = models.BooleanField(default=False, help_text="Its inputs are kept (for drift)")
    inputs = models.JSONField(null=True, blank=True)
    outputs = models.JSONField(null=True, blank=True, help_text="Kept for feedback, up to a size")
    pair = models.UUIDField(null=True, blank=True, help_text="Shadow rows: the live request copied")
    agreement = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # the health charts' open minutes; retention by age
            models.Index(fields=["model", "at"], name="prediction_model_at_idx"),
            models.Index(fields=["at"], name="prediction_at_idx"),
            # drift: a version's sampled inputs of the last day
            models.Index(fields=["version", "at"], name="prediction_sampled_idx", condition=models.Q(sampled=True)),
        ]

    def __str__(self):
        return f"prediction {self.uid} ({self.status})"


class PredictionMinute(models.Model):
    """The prediction log of one version in one role for one minute (requests no version
    answered, such as "nothing deployed", are in the log only). `latency_bins` counts
    requests per latency bucket (app.mlmodels.health.BOUNDS), so percentiles of any span are
    the sum of its minutes' bins."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.LIVE)
    minute = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)
    errors_4xx = models.PositiveIntegerField(default=0)
    errors_5xx = models.PositiveIntegerField(default=0)
    instances = models.PositiveBigIntegerField(default=0)
    latency_bins = models.JSONField(default=list)

    class Meta:
        ordering = ["minute"]
        constraints = [
            models.UniqueConstraint(fields=["version", "role", "minute"], name="predictionminute_unique"),
        ]
        indexes = [
            # a model's health chart over an hour, a day or a week
            models.Index(fields=["model", "minute"], name="predictionminute_model_idx"),
        ]


class ReferenceProfile(models.Model):
    """What the training inputs of a version looked like, per feature (summary statistics and
    histogram bins), and the distribution of its evaluation predictions."""

    version = models.OneToOneField(ModelVersion, on_delete=models.CASCADE, related_name="reference")
    rows = models.PositiveIntegerField()
    features = models.JSONField(help_text="A list, in feature order")
    predictions = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"reference of {self.version}"


class DriftReport(models.Model):
    """Recent sampled inputs of a version against its reference profile."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="drift_reports")
    computed_at = models.DateTimeField()
    window_start = models.DateTimeField()
    rows = models.PositiveIntegerField()
    features = models.JSONField(help_text="Per feature: name, psi, ks, p_value and both histograms")
    predictions = models.JSONField(null=True, blank=True)
    max_psi = models.FloatField(null=True, blank=True)
    worst_feature = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-computed_at"]
        indexes = [
            # the model page: a version's latest report
            models.Index(fields=["version", "-computed_at"], name="driftreport_version_idx"),
        ]


class TrialMode(models.TextChoices):
    SHADOW = "shadow", "shadow"
    CANARY = "canary", "canary"


class TrialOutcome(models.TextChoices):
    PROMOTED = "promoted", "promoted"
    ABORTED = "aborted", "aborted"
    REPLACED = "replaced", "ended: the live version changed"


class Trial(models.Model):
    """A candidate version next to the live one: in shadow it answers a copy of live traffic
    (logged, never returned); as a canary it answers `percent` % of requests. Ends promoted
    (it goes live) or aborted; `promote_after` is set when a retrain rule asked for a shadow
    period, after which the worker promotes it."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="trials")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="trials")
    mode = models.CharField(max_length=10, choices=TrialMode.choices)
    percent = models.PositiveSmallIntegerField(default=0, help_text="Canary: the share of requests it answers")
    reason = models.CharField(max_length=200)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_by_name = models.CharField(max_length=150, blank=True)
    started_at = models.DateTimeField()
    promote_after = models.DateTimeField(null=True, blank=True)
    promotion = models.ForeignKey(Promotion, null=True, blank=True, on_delete=models.SET_NULL, related_name="trials")
    ended_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=TrialOutcome.choices, blank=True)
    ended_by_name = models.CharField(max_length=150, blank=True)
    end_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # a model's production history
            models.Index(fields=["model", "-id"], name="trial_model_idx"),
        ]

    def __str__(self):
        share = f" {self.percent} %" if self.mode == TrialMode.CANARY else ""
        return f"{self.version} in {self.get_mode_display()}{share}"

    def get_absolute_url(self):
        return reverse("model_detail", args=[self.model.name])


class Feedback(models.Model):
    """The true labels of one prediction request, one per instance, and how the answer
    compared: `correct` instances (labels that are classes) or `abs_error_sum` (numbers)."""

    prediction = models.OneToOneField(Prediction, on_delete=models.CASCADE, related_name="feedback")
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    at = models.DateTimeField()
    labels = models.JSONField()
    n = models.PositiveIntegerField()
    correct = models.PositiveIntegerField(null=True, blank=True)
    abs_error_sum = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # the model page: live accuracy over time
            models.Index(fields=["model", "at"], name="feedback_model_at_idx"),
        ]
