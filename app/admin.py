from django.contrib import admin

from app.models import Metric, PipelineSnapshot, Run, StepRun


class ReadOnlyAdmin(admin.ModelAdmin):
    """Runs are history: the admin shows them, the engine alone changes them."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


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


@admin.register(PipelineSnapshot)
class PipelineSnapshotAdmin(ReadOnlyAdmin):
    list_display = ["pipeline_name", "source_hash", "created_at"]
    exclude = ["layout_svg"]


@admin.register(Metric)
class MetricAdmin(ReadOnlyAdmin):
    list_display = ["run", "name", "value", "logged_at"]
    search_fields = ["name", "=run__id"]
    list_select_related = ["run"]
