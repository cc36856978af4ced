"""Models: the registry, deployments, retrain-and-deploy requests, result tables, API tokens."""

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from app.models.fields import OrderedJSONField
from app.models.runs import PipelineSnapshot, Run, StepRun


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
    trial = models.ForeignKey("Trial", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                              help_text="The candidate in shadow or canary next to the live version")
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
    metrics = OrderedJSONField(default=dict, blank=True)
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="model_versions")
    step_run = models.ForeignKey(StepRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="model_versions")
    attempt = models.PositiveIntegerField(default=1, help_text="The attempt of its step run that recorded it: only the recorded attempt's count")
    pipeline_name = models.CharField(max_length=100, blank=True)
    params = OrderedJSONField(default=dict, blank=True, help_text="The run's parameters")
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
    TRIAL = "trial", "promoted from shadow or canary"


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
    SHADOW = "shadow", "in shadow before deploying"


class Promotion(models.Model):
    """A retrain-and-deploy request: a training run and the rule deciding whether the version
    it registers goes live. Decided when the run finishes; the verdict keeps both numbers."""

    run = models.OneToOneField(Run, on_delete=models.CASCADE, related_name="promotion")
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="promotions")
    rule = models.CharField(max_length=20, choices=PromotionRule.choices)
    metric = models.CharField(max_length=100, blank=True)
    shadow_minutes = models.PositiveIntegerField(
        default=0, help_text="A version the rule would deploy first answers in shadow this long; 0: deploy at once")
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
    attempt = models.PositiveIntegerField(default=1, help_text="The attempt of its step run that recorded it: only the recorded attempt's count")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=ResultKind.choices)
    data = OrderedJSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.name} of run #{self.run_id}"


class TokenScope(models.TextChoices):
    """What an API token may do; a token holds one or more."""

    PREDICT = "predict", "predict: ask deployed models for predictions"
    RUNS_READ = "runs:read", "runs:read: list pipelines, read runs, their steps and logs"
    RUNS_WRITE = "runs:write", "runs:write: start, cancel, retry and re-run runs"


class ApiToken(models.Model):
    """A per-user secret for the JSON API. Only its SHA-256 digest is stored; the token is
    shown once, when it is created. It acts as its user, within its scopes, until it expires
    or is revoked."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for")
    prefix = models.CharField(max_length=16, help_text="The first characters, to tell tokens apart")
    digest = models.CharField(max_length=64, unique=True)
    # Space-separated TokenScope values, as OAuth writes scopes.
    scopes = models.CharField(max_length=200, default=TokenScope.PREDICT)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires")
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

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()
