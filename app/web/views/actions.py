"""Operator actions on a run: cancel, retry from failure (with a preview), re-run."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from app.ops import operate
from app.pipelines import dag_svg
from app.runs import actions, tasks
from app.web.access import operator_required
from app.web.views.runs import get_run_or_404, saves_a_run


@require_POST
@operator_required
def cancel(request, run_id):
    run = get_run_or_404(run_id)
    try:
        run = operate.cancel(run, request.user)
    except operate.ActionRefused as exc:
        messages.error(request, str(exc))
        return redirect(run)
    # From htmx only the live part of the run page is swapped in, and it shows the
    # cancellation itself; a flash message would surface later on another page.
    if not request.htmx:
        state = "is cancelled" if run.is_finished else "is being cancelled: no new step will start"
        messages.success(request, f"Run #{run.pk} {state}.")
    return redirect(run)


@require_GET
@operator_required
def retry_preview(request, run_id):
    run = get_run_or_404(run_id)
    again, reused = actions.retry_plan(run)
    layout = tasks.layout_for(run.snapshot)
    plan = {name: "retrying" for name in again} | {name: "succeeded" for name in reused}
    base_url = reverse("run_detail", args=[run.pk]) + "steps/"
    return render(
        request,
        "runs/retry.html",
        {
            "run": run,
            "again": again,
            "reused": reused,
            "retryable": run.status in actions.RETRYABLE,
            "dag": dag_svg.apply_status(layout, plan, base_url) if layout else None,
        },
    )


@require_POST
@operator_required
@saves_a_run(back="run_detail")
def retry(request, run_id):
    run = get_run_or_404(run_id)
    try:
        new = operate.retry(run, request.user)
    except operate.ActionRefused as exc:
        messages.error(request, str(exc))
        return redirect(run)
    if new.start_error:
        messages.error(request, f"Run #{new.pk} could not be started: the task queue refused it ({new.start_error}).")
        return redirect(new)
    messages.success(request, f"Run #{new.pk} retries run #{run.pk} from the point of failure.")
    return redirect(new)


@require_POST
@operator_required
@saves_a_run(back="run_detail")
def rerun(request, run_id):
    run = get_run_or_404(run_id)
    try:
        new = operate.rerun(run, request.user)
    except operate.ActionRefused as exc:
        messages.error(request, str(exc))
        return redirect(run)
    if new.start_error:
        messages.error(request, f"Run #{new.pk} could not be started: the task queue refused it ({new.start_error}).")
        return redirect(new)
    messages.success(request, f"Run #{new.pk} re-runs run #{run.pk} with the same parameters.")
    return redirect(new)
