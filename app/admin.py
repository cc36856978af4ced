from django.contrib import admin

from app.models import AuditEvent, Metric, ParameterSet, ParameterSetRevision, PipelineSnapshot, Run, StepAttempt, StepRun


class ReadOnlyAdmin(admin.ModelAdmin):
    """Runs are history: the admin shows them, the engine alone changes them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
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


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ["id", "pipeline_name", "status", "steps_finished", "steps_total", "triggered_by", "created_at"]
    list_filter = ["status", "pipeline_name", "trigger_source"]
    search_fields = ["=id", "pipeline_name"]
    inlines = [StepRunInline]


@admin.register(StepRun)
class StepRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "run", "step_name", "status", "attempt", "started_at", "finished_at"]
    list_filter = ["status"]
    search_fields = ["step_name", "=run__id"]
    list_select_related = ["run"]
    inlines = [StepAttemptInline]


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

    list_display = ["at", "username", "action", "target_label", "pipeline_name"]
    list_filter = ["action", "pipeline_name"]
    search_fields = ["username", "target_label"]
    date_hierarchy = "at"

    def has_delete_permission(self, request, obj=None):
        return False


class RevisionInline(admin.TabularInline):
    model = ParameterSetRevision
    fields = ["number", "values", "note", "created_by", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(ParameterSet)
class ParameterSetAdmin(ReadOnlyAdmin):
    list_display = ["pipeline_name", "name", "is_default", "archived_at", "created_at"]
    list_filter = ["pipeline_name", "is_default"]
    search_fields = ["name", "pipeline_name"]
    inlines = [RevisionInline]


@admin.register(ParameterSetRevision)
class ParameterSetRevisionAdmin(ReadOnlyAdmin):
    list_display = ["parameter_set", "number", "created_by", "created_at"]
    list_select_related = ["parameter_set", "created_by"]
