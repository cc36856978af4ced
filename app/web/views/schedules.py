"""Schedules: the list, a schedule's page (its next slots and what each past slot did),
create, edit, on/off, delete, the live preview of an expression; pausing a pipeline."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from app.models import Backfill, Schedule
from app.ops import backfills, scheduler, schedules
from app.web.access import operator_required
from app.web.forms import BackfillForm, ReasonForm, ScheduleForm
from app.web.views.pipelines import get_pipeline_or_404

SLOTS_PER_PAGE = 25


def get_schedule_or_404(schedule_id):
    try:
        return Schedule.objects.select_related("parameter_set").get(pk=schedule_id)
    except Schedule.DoesNotExist:
        raise Http404(f"There is no schedule #{schedule_id}.") from None


@require_GET
@operator_required
def schedule_list(request):
    rows = [
        {"schedule": s, "words": scheduler.describe(s.cron), "next": scheduler.next_slots(s, 1) if s.enabled else []}
        for s in Schedule.objects.select_related("parameter_set")
    ]
    return render(request, "schedules/list.html", {"rows": rows, "paused": schedules.paused_pipelines()})


@require_http_methods(["GET", "POST"])
@operator_required
def schedule_create(request, name):
    pipe = get_pipeline_or_404(name)
    form = ScheduleForm(pipe, request.POST or None)
    if request.method == "POST" and form.is_valid():
        schedule = schedules.create(form.save(commit=False), pipe.name, request.user)
        messages.success(request, f"Schedule “{schedule.name}” created: {scheduler.describe(schedule.cron).lower()} ({schedule.timezone}).")
        return redirect(schedule)
    return _form_page(request, pipe, form, creating=True)


def _form_page(request, pipe, form, **context):
    cron = form["cron"].value()
    if cron:
        context.update(preview(cron, form["timezone"].value()))
    context.update(pipe=pipe, form=form)
    return render(request, "schedules/form.html", context, status=422 if request.method == "POST" else 200)


def detail_context(request, schedule) -> dict:
    page = Paginator(schedule.slots.select_related("run"), SLOTS_PER_PAGE).get_page(request.GET.get("page"))
    return {
        "schedule": schedule,
        "words": scheduler.describe(schedule.cron),
        "upcoming": scheduler.next_slots(schedule) if schedule.enabled else [],
        "page": page,
        "paused": scheduler.is_paused(schedule.pipeline_name),
        "backfills": [(b, backfills.progress(b)) for b in schedule.backfills.all()[:10]],
        "backfill_form": BackfillForm(schedule),
    }


@require_GET
@operator_required
def schedule_detail(request, schedule_id):
    schedule = get_schedule_or_404(schedule_id)
    return render(request, "schedules/detail.html", detail_context(request, schedule))


@require_http_methods(["GET", "POST"])
@operator_required
def schedule_edit(request, schedule_id):
    schedule = get_schedule_or_404(schedule_id)
    pipe = get_pipeline_or_404(schedule.pipeline_name)
    before = schedules.values(schedule)
    form = ScheduleForm(pipe, request.POST or None, instance=schedule)
    if request.method == "POST" and form.is_valid():
        changes = schedules.save(form.save(commit=False), before, request.user)
        if changes:
            messages.success(request, f"Schedule “{schedule.name}” saved ({', '.join(changes)} changed).")
        else:
            messages.info(request, "Nothing changed.")
        return redirect(schedule)
    return _form_page(request, pipe, form, schedule=schedule)


@require_POST
@operator_required
def schedule_toggle(request, schedule_id):
    schedule = get_schedule_or_404(schedule_id)
    enabled = not schedule.enabled
    if schedules.set_enabled(schedule, enabled, request.user):
        messages.success(request, f"Schedule “{schedule.name}” is {'on: its next slot starts a run' if enabled else 'off'}.")
    return redirect(schedule)


@require_POST
@operator_required
def schedule_delete(request, schedule_id):
    schedule = get_schedule_or_404(schedule_id)
    name, pipeline_name = schedule.name, schedule.pipeline_name
    schedules.delete(schedule, request.user)
    messages.success(request, f"Schedule “{name}” deleted; the runs it started stay in the history.")
    return redirect("pipeline_detail", pipeline_name)


def preview(cron, zone_name) -> dict:
    """An expression in words and its next five times, or `error`: what is wrong with it."""
    try:
        cron = scheduler.check_cron(cron or "")
        zone = scheduler.check_timezone(zone_name or "UTC")
    except ValueError as exc:
        return {"error": str(exc)}
    found = scheduler.slots(cron, zone, timezone.now(), limit=5)
    return {"words": scheduler.describe(cron), "upcoming": found, "zone": zone.key}


@require_GET
@operator_required
def schedule_preview(request):
    """The live preview under the form's expression (htmx)."""
    return render(request, "schedules/_preview.html", preview(request.GET.get("cron"), request.GET.get("timezone")))


@require_POST
@operator_required
def pipeline_pause(request, name):
    pipe = get_pipeline_or_404(name)
    pausing = request.POST.get("paused") != "0"
    reason = ""
    if pausing:
        form = ReasonForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Give a short reason to pause it: it is shown to everyone who runs it.")
            return redirect("pipeline_detail", pipe.name)
        reason = form.cleaned_data["reason"]
    if schedules.set_paused(pipe.name, pausing, request.user, reason):
        messages.success(request, f"{pipe.name} is paused: its schedules start nothing until it is resumed."
                         if pausing else f"{pipe.name} is resumed: its schedules start runs again from their next slot.")
    return redirect("pipeline_detail", pipe.name)


def get_backfill_or_404(backfill_id):
    try:
        return Backfill.objects.select_related("schedule").get(pk=backfill_id)
    except Backfill.DoesNotExist:
        raise Http404(f"There is no backfill #{backfill_id}.") from None


@require_POST
@operator_required
def backfill_start(request, schedule_id):
    schedule = get_schedule_or_404(schedule_id)
    form = BackfillForm(schedule, request.POST)
    if form.is_valid():
        first, last = form.cleaned_data["range"]
        try:
            backfill = backfills.start(schedule, first, last, form.cleaned_data["max_parallel"], request.user)
        except backfills.BackfillError as exc:
            form.add_error(None, str(exc)[:1].upper() + str(exc)[1:] + ".")
        else:
            total = backfill.slots.count()
            messages.success(request, f"Backfill #{backfill.pk} started: {total} slot(s), at most {backfill.max_parallel} at a time.")
            return redirect(backfill)
    return render(request, "schedules/detail.html", {**detail_context(request, schedule), "backfill_form": form}, status=422)


@require_GET
@operator_required
def backfill_detail(request, backfill_id):
    backfill = get_backfill_or_404(backfill_id)
    rows = backfills.slot_states(backfill)
    context = {"backfill": backfill, "rows": rows, "counts": backfills.progress(backfill, rows),
               "polling": backfill.state == Backfill.State.RUNNING}
    template = "schedules/backfill.html#live" if request.htmx else "schedules/backfill.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_POST
@operator_required
def backfill_cancel(request, backfill_id):
    backfill = get_backfill_or_404(backfill_id)
    try:
        backfills.cancel(backfill, request.user)
    except backfills.BackfillError as exc:
        messages.error(request, str(exc)[:1].upper() + str(exc)[1:] + ".")
    else:
        messages.success(request, f"Backfill #{backfill.pk} cancelled: waiting slots will not start, running runs are being stopped.")
    return redirect(backfill)


@require_POST
@operator_required
def backfill_retry(request, backfill_id):
    backfill = get_backfill_or_404(backfill_id)
    try:
        count = backfills.retry_failed(backfill, request.user)
    except backfills.BackfillError as exc:
        messages.error(request, str(exc)[:1].upper() + str(exc)[1:] + ".")
    else:
        messages.success(request, f"{count} failed slot(s) of backfill #{backfill.pk} will run again, in their turn.")
    return redirect(backfill)
