import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from app.api import tokens
from app.models import (
    AlertChannel,
    AlertRule,
    ApiToken,
    AuditAction,
    AuditEvent,
    Backfill,
    BackfillSlot,
    Delivery,
    Deployment,
    DriftReport,
    Feedback,
    Incident,
    Lease,
    Metric,
    ModelVersion,
    ParameterSet,
    ParameterSetRevision,
    PipelineSnapshot,
    PipelineState,
    Pool,
    Prediction,
    PredictionMinute,
    Preferences,
    Promotion,
    ReferenceProfile,
    RegisteredModel,
    ResultTable,
    Run,
    RunTag,
    Schedule,
    ScheduledSlot,
    StepAttempt,
    StepRun,
    StoreMarker,
    TokenScope,
    Trial,
    WorkerHeartbeat,
)
from app.pipelines.registry import POOL_RULE, ParamError, valid_queue
from app.runs import audit, paramsets


class ReadOnlyAdmin(admin.ModelAdmin):
    """Runs, versions, deployments and the audit trail are history: the admin shows them; the
    engine and the pages' own actions (each audited) alone change them, and nothing here
    deletes them (a deleted deployment would be a silent undeploy; a deleted step run would
    leave its run counting steps that are gone)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class StepAttemptInline(admin.TabularInline):
    model = StepAttempt
    fields = ["number", "status", "started_at", "finished_at", "worker", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


class StepRunInline(admin.TabularInline):
    model = StepRun
    fields = ["step_name", "status", "attempt", "started_at", "finished_at", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


class RunTagInline(admin.TabularInline):
    model = RunTag
    fields = ["name"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ["id", "pipeline_name", "status", "steps_finished", "steps_total", "triggered_by", "tag_names",
                    "created_at"]
    list_filter = ["status", "pipeline_name", "trigger_source"]
    search_fields = ["=id", "pipeline_name", "=tags__name"]
    list_select_related = ["triggered_by"]
    inlines = [RunTagInline, StepRunInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tags")

    @admin.display(description="tags")
    def tag_names(self, run):
        return ", ".join(tag.name for tag in run.tags.all()) or "—"


@admin.register(RunTag)
class RunTagAdmin(ReadOnlyAdmin):
    list_display = ["name", "run"]
    search_fields = ["name", "=run__id"]
    list_select_related = ["run"]


@admin.register(StepRun)
class StepRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "run", "step_name", "status", "attempt", "started_at", "finished_at"]
    list_filter = ["status"]
    search_fields = ["step_name", "=run__id"]
    list_select_related = ["run"]
    inlines = [StepAttemptInline]


class PoolAdminForm(forms.ModelForm):
    """A pool's name follows the rule of @p.step(pool=...); its size, Pool.clean's."""

    def clean_name(self):
        name = self.cleaned_data["name"]
        if not valid_queue(name):
            raise forms.ValidationError(f"A {POOL_RULE}.")
        return name


@admin.register(Pool)
class PoolAdmin(admin.ModelAdmin):
    """Concurrency pools: how many steps naming each (@p.step(pool=...)) run at once. The
    Pools page (app.web.views.pools) shows what runs in them and sets their sizes too."""

    form = PoolAdminForm
    list_display = ["name", "size", "description"]
    search_fields = ["name"]


@admin.register(PipelineSnapshot)
class PipelineSnapshotAdmin(ReadOnlyAdmin):
    list_display = ["pipeline_name", "source_hash", "created_at"]
    exclude = ["layout_svg"]


@admin.register(Metric)
class MetricAdmin(ReadOnlyAdmin):
    list_display = ["run", "name", "value", "logged_at"]
    search_fields = ["name", "=run__id"]
    list_select_related = ["run"]


@admin.register(StepAttempt)
class StepAttemptAdmin(ReadOnlyAdmin):
    list_display = ["step_run", "number", "status", "started_at", "finished_at", "error"]
    list_filter = ["status"]
    list_select_related = ["step_run"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail can be read here, never written or deleted."""

    list_display = ["at", "username", "action", "target", "pipeline_name"]
    list_filter = ["action", "pipeline_name"]
    search_fields = ["username", "target_label"]
    date_hierarchy = "at"
    fields = ["at", "user", "username", "action", "pipeline_name", "target", "target_type", "target_id", "details_json"]
    readonly_fields = ["target", "details_json"]

    @admin.display(description="target", ordering="target_label")
    def target(self, event):
        if event.target_url:
            return format_html('<a href="{}">{}</a>', event.target_url, event.target_label)
        return event.target_label or "—"

    @admin.display(description="details")
    def details_json(self, event):
        return format_html("<pre>{}</pre>", json.dumps(event.details, indent=2, ensure_ascii=False, default=str))


class RevisionInline(admin.TabularInline):
    model = ParameterSetRevision
    fields = ["number", "values", "note", "created_by", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True  # the revision's page links to the runs made from it

    def has_add_permission(self, request, obj=None):
        return False  # a revision is made by saving the set's values


class ParameterSetAdminForm(forms.ModelForm):
    """Edits the values as JSON; they are checked against the pipeline's declaration and saved
    as a new revision, exactly like the operator form (app.runs.paramsets)."""

    values = forms.JSONField(help_text="The parameter values, as JSON; saving makes a new revision")
    note = forms.CharField(max_length=200, required=False, help_text="Why this change (optional)")

    class Meta:
        model = ParameterSet
        fields = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.latest:
            self.fields["values"].initial = self.instance.latest.values

    def clean_values(self):
        values = self.cleaned_data["values"]
        if not isinstance(values, dict):
            raise forms.ValidationError("Give the values as a JSON object, e.g. {\"rows\": 100}.")
        # The same checks as every other save (app.runs.paramsets), reported on this field.
        try:
            values, _changes = paramsets.changes_for(self.instance.latest, values)
        except ParamError as exc:
            raise forms.ValidationError([f"{name}: {message}" for name, message in exc.errors.items()]) from None
        except paramsets.SetRefused as exc:
            raise forms.ValidationError(str(exc)) from None
        return values


@admin.register(ParameterSet)
class ParameterSetAdmin(admin.ModelAdmin):
    form = ParameterSetAdminForm
    list_display = ["pipeline_name", "name", "is_default", "archived_at", "created_at"]
    list_filter = ["pipeline_name", "is_default"]
    search_fields = ["name", "pipeline_name"]
    readonly_fields = ["pipeline_name", "name", "is_default", "archived_at", "created_by", "created_at"]
    fields = readonly_fields + ["values", "note"]
    inlines = [RevisionInline]

    def has_add_permission(self, request):
        return False  # sets are created from the pipeline's own form, which knows its parameters

    def has_delete_permission(self, request, obj=None):
        return False  # runs keep pointing at their revisions

    def save_model(self, request, obj, form, change):
        paramsets.save_revision(obj, form.cleaned_data["values"], request.user, form.cleaned_data["note"])


@admin.register(ParameterSetRevision)
class ParameterSetRevisionAdmin(ReadOnlyAdmin):
    list_display = ["parameter_set", "number", "created_by", "created_at"]
    list_select_related = ["parameter_set", "created_by"]
    fields = ["parameter_set", "number", "values", "note", "created_by", "created_at", "runs"]
    readonly_fields = ["runs"]

    @admin.display(description="runs")
    def runs(self, revision):
        # A link to the filtered run list rather than an inline: a revision can start thousands of runs.
        count = revision.runs.count()
        if not count:
            return "none yet"
        url = reverse("admin:app_run_changelist") + f"?parameter_revision__id__exact={revision.pk}"
        return format_html('<a href="{}">{} run{}</a>', url, count, "" if count == 1 else "s")


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["name", "queue", "threads", "last_seen", "started_at", "stopping"]
    list_filter = ["queue", "stopping"]


@admin.register(Preferences)
class PreferencesAdmin(admin.ModelAdmin):
    """Each person's own choices (the time zone of times); people change them on /account/."""

    list_display = ["user", "time_zone"]
    search_fields = ["user__username"]


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdmin):
    """Which worker last did each piece of periodic work (app.runs.leases)."""

    list_display = ["name", "holder", "taken_at", "done_at", "problem"]


@admin.register(Schedule)
class ScheduleAdmin(ReadOnlyAdmin):
    """Shown here; created, edited, turned on and off on the schedule pages (each audited)."""

    list_display = ["__str__", "cron", "timezone", "enabled", "overlap", "last_slot"]
    list_filter = ["pipeline_name", "enabled"]


@admin.register(ScheduledSlot)
class ScheduledSlotAdmin(ReadOnlyAdmin):
    list_display = ["schedule", "slot", "outcome", "run", "missed"]
    list_filter = ["outcome"]


@admin.register(Backfill)
class BackfillAdmin(ReadOnlyAdmin):
    """Started, cancelled and retried on the schedule and backfill pages (audited)."""

    list_display = ["__str__", "start", "end", "max_parallel", "state", "created_by"]
    list_filter = ["state"]


@admin.register(BackfillSlot)
class BackfillSlotAdmin(ReadOnlyAdmin):
    list_display = ["backfill", "slot", "run", "cancelled", "message"]


@admin.register(AlertChannel)
class AlertChannelAdmin(ReadOnlyAdmin):
    """Set up on the Alerts page (audited), where targets are checked and secrets hidden."""

    list_display = ["name", "kind", "shown_target", "enabled"]
    exclude = ["target"]


@admin.register(AlertRule)
class AlertRuleAdmin(ReadOnlyAdmin):
    list_display = ["name", "condition", "pipeline_name", "minutes", "remind_hours", "enabled"]


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    list_display = ["summary", "rule", "opened_at", "closed_at", "acknowledged_by"]
    list_filter = ["rule"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "incident", "state", "attempts", "sent_at", "last_error"]
    list_filter = ["state", "event"]


@admin.register(PipelineState)
class PipelineStateAdmin(ReadOnlyAdmin):
    """Paused pipelines: paused and resumed on the pipeline page (audited)."""

    list_display = ["pipeline_name", "paused", "reason", "changed_by", "changed_at"]


@admin.register(StoreMarker)
class StoreMarkerAdmin(ReadOnlyAdmin):
    """The artifact store's id (app.runs.store_check): read-only, since workers compare the
    store against it."""

    list_display = ["store_id", "where", "created_at"]


# --- models ------------------------------------------------------------------------------


def link(obj, label=None):
    """A link to an object's page on the site (not in the admin)."""
    if obj is None:
        return "—"
    return format_html('<a href="{}">{}</a>', obj.get_absolute_url(), label or obj)


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    fields = ["version", "metrics", "run", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


class DeploymentInline(admin.TabularInline):
    model = Deployment
    fields = ["version", "kind", "reason", "deployed_by_name", "deployed_at", "retired_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    """Only the headline metric is edited here; deploys go through the models pages, so
    each one has a reason, a confirmation and an audit event."""

    list_display = ["name", "live_version", "headline_metric", "pipeline_name", "latest_version", "created_at"]
    search_fields = ["name", "pipeline_name"]
    fields = ["name", "headline_metric", "pipeline_name", "latest_version", "live", "site_page"]
    readonly_fields = ["name", "pipeline_name", "latest_version", "live", "site_page"]
    list_select_related = ["live__version"]
    inlines = [ModelVersionInline, DeploymentInline]

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # it would take its versions and its production history with it

    @admin.display(description="live version")
    def live_version(self, obj):
        return f"v{obj.live.version.version}" if obj.live else "—"

    @admin.display(description="on the site")
    def site_page(self, obj):
        return link(obj, "models page")


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "model", "version", "pipeline_name", "run_link", "created_at"]
    list_filter = ["model", "pipeline_name"]
    search_fields = ["model__name", "=run__id"]
    list_select_related = ["model", "run"]

    @admin.display(description="run")
    def run_link(self, obj):
        return link(obj.run)


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = ["model", "version", "kind", "deployed_by_name", "deployed_at", "retired_at", "reason"]
    list_filter = ["kind", "model"]
    search_fields = ["model__name", "reason", "deployed_by_name"]
    list_select_related = ["model", "version__model"]


@admin.register(Promotion)
class PromotionAdmin(ReadOnlyAdmin):
    list_display = ["run", "model", "rule", "metric", "verdict", "candidate_value", "live_value", "decided_at"]
    list_filter = ["verdict", "rule", "model"]
    list_select_related = ["run", "model"]


@admin.register(ResultTable)
class ResultTableAdmin(ReadOnlyAdmin):
    list_display = ["name", "kind", "run", "step_run", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "=run__id"]
    list_select_related = ["run", "step_run__run"]


# Monitoring (app.mlmodels): the prediction log and what is computed from it are records,
# shown and never edited here; trials change through the model page (audited).
@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = ["uid", "model", "version", "role", "at", "status", "latency_ms", "n_instances", "token_name"]
    list_filter = ["role", "status", "model"]
    search_fields = ["=uid", "token_name", "error"]
    list_select_related = ["model", "version__model"]
    date_hierarchy = "at"


@admin.register(PredictionMinute)
class PredictionMinuteAdmin(ReadOnlyAdmin):
    list_display = ["minute", "model", "version", "role", "requests", "errors_4xx", "errors_5xx"]
    list_filter = ["role", "model"]
    list_select_related = ["model", "version__model"]


@admin.register(ReferenceProfile)
class ReferenceProfileAdmin(ReadOnlyAdmin):
    list_display = ["version", "rows", "created_at"]
    list_select_related = ["version__model"]


@admin.register(DriftReport)
class DriftReportAdmin(ReadOnlyAdmin):
    list_display = ["version", "computed_at", "rows", "max_psi", "worst_feature"]
    list_select_related = ["version__model"]


@admin.register(Trial)
class TrialAdmin(ReadOnlyAdmin):
    list_display = ["model", "version", "mode", "percent", "started_at", "started_by_name", "ended_at", "outcome"]
    list_filter = ["mode", "outcome", "model"]
    list_select_related = ["model", "version__model"]


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyAdmin):
    list_display = ["prediction", "model", "version", "at", "n", "correct", "abs_error_sum"]
    list_select_related = ["prediction", "model", "version__model"]


class ApiTokenAddForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=TokenScope.choices, widget=forms.CheckboxSelectMultiple,
                                       initial=[TokenScope.PREDICT])

    class Meta:
        model = ApiToken
        fields = ["user", "name", "scopes", "expires_at"]

    def clean(self):
        data = super().clean()
        user, scopes = data.get("user"), data.get("scopes") or []
        if user is not None:
            refused = sorted(set(scopes) - set(tokens.allowed_scopes(user)))
            if refused:
                self.add_error("scopes", f"{user.get_username()} is not an operator, so their token cannot have "
                                         + ", ".join(refused) + ".")
        expires_at = data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            self.add_error("expires_at", "The expiry must be in the future.")
        return data


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Admins create tokens for anyone (shown once, in a message) and revoke them; the
    digest is never shown or edited."""

    list_display = ["name", "user", "prefix", "scopes", "created_at", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "user__username", "prefix"]
    list_select_related = ["user"]
    readonly_fields = ["user", "name", "prefix", "scopes", "created_at", "expires_at", "last_used_at", "revoked_at"]
    fields = readonly_fields
    actions = ["revoke"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["user", "name", "scopes", "expires_at"] if obj is None else self.fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = form.cleaned_data
        token, secret = tokens.create(
            data["user"], data["name"], by=request.user, scopes=data["scopes"], expires_at=data["expires_at"]
        )
        obj.pk = token.pk
        messages.warning(request, f"The new token for {token.user.get_username()} is {secret} — copy it now, it is not shown again.")

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        done = sum(tokens.revoke(token, request.user) for token in queryset.select_related("user"))
        messages.success(request, f"Revoked {done} token(s).")


# Every change made in the admin is also in the audit trail (Django's LogEntry is written for
# each add, change and delete the admin makes, whatever the model: users and groups too).
_ADMIN_ACTIONS = {ADDITION: AuditAction.ADMIN_ADD, CHANGE: AuditAction.ADMIN_CHANGE, DELETION: AuditAction.ADMIN_DELETE}


@receiver(post_save, sender=LogEntry)
def audit_admin_change(sender, instance: LogEntry, created, **kwargs):
    if not created:
        return
    event = audit.record(
        instance.user, _ADMIN_ACTIONS[instance.action_flag],
        details={"change": instance.get_change_message()} if instance.change_message else {},
    )
    event.target_type = instance.content_type.name if instance.content_type_id else ""
    event.target_id = str(instance.object_id or "")[:50]
    event.target_label = instance.object_repr[:200]
    if instance.action_flag != DELETION:
        event.target_url = instance.get_admin_url() or ""
    event.save(update_fields=["target_type", "target_id", "target_label", "target_url"])
