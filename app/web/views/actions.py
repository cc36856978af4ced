"""Operator actions on a run: cancel, retry from failure (with a preview), re-run, its note,
and marking a step's outcome by hand (with a confirmation page)."""

from collections import Counter

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from app.models import Status
from app.ops import operate
from app.pipelines import dag_svg
from app.runs import actions, tasks
from app.web.access import operator_required
from app.web.forms import MarkStepForm, RunNoteForm
from app.web.views.runs import get_run_or_404, get_step_run_or_404, saves_a_run


@require_http_methods(["GET", "POST"])
@operator_required
def cancel(request, run_id):
    """GET: the confirmation, as a page (the run page's button asks in a dialog when the
    browser runs JavaScript, and opens this page when it does not). POST: cancel."""
    run = get_run_or_404(run_id)
    if request.method == "GET":
        counts = Counter(run.step_runs.filter(map_of__isnull=True).values_list("status", flat=True))
        context = {
            "run": run,
            "running": counts[Status.RUNNING],
            "not_started": sum(counts[status] for status in (Status.PENDING, Status.QUEUED, Status.RETRYING)),
        }
        return render(request, "runs/cancel.html", context)
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


@require_POST
@operator_required
def note(request, run_id):
    """Save the run's note. From htmx: the note's part of the run page again (with the
    error, and what was typed, when it is refused); else back to the run page."""
    run = get_run_or_404(run_id)
    form = RunNoteForm(request.POST)
    if form.is_valid():
        saved = operate.set_note(run, form.cleaned_data["note"], request.user)
        messages.success(request, f"The note of run #{run.pk} is {'saved' if saved else 'unchanged'}.")
        if not request.htmx:
            return redirect(run)
        form = None
    elif not request.htmx:
        messages.error(request, f"The note of run #{run.pk} was not saved: {' '.join(form.errors['note'])}")
        return redirect(run)
    response = render(request, "runs/_note.html", {"run": run, "note_form": form})
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_http_methods(["GET", "POST"])
@operator_required
def step_mark(request, run_id, step):
    """GET: what marking the step's outcome by hand does, in words, and the reason to give;
    POST: mark it (422 without a reason, 409 when the step changed since the page showed it;
    nothing changes either way)."""
    run = get_run_or_404(run_id)
    step_run = get_step_run_or_404(run, step)
    refused, status = "", 200
    if request.method == "POST":
        form = MarkStepForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                plan = operate.mark_step(
                    step_run, data["outcome"], data["reason"], request.user, expected=(data["status"], data["attempt"])
                )
            except operate.ActionRefused as exc:
                # Shown above the page as it is now, with a form for the step's current state.
                refused, status = str(exc), 409
                step_run.refresh_from_db()
                run.refresh_from_db()
                form = _mark_form(step_run, data["outcome"], reason=data["reason"])
            else:
                messages.success(request, _marked(plan))
                return redirect(step_run)
        else:
            status = 422
        outcome = form.data.get("outcome") if not refused else form.initial["outcome"]
    else:
        outcome = request.GET.get("outcome", "")
        form = _mark_form(step_run, outcome)
        outcome = form.initial["outcome"]
    outcome = outcome if outcome in actions.MARK_OUTCOMES else Status.SUCCEEDED
    refusal = actions.mark_refusal(step_run, run, outcome)
    context = {
        "run": run,
        "step_run": step_run,
        "outcome": outcome,
        "outcome_label": Status(outcome).label,
        "other": [o for o in actions.mark_outcomes(step_run, run) if o != outcome],
        "refusal": refusal,
        "refused": refused,
        "plan": None if refusal else actions.plan_for(step_run, outcome),
        "stuck_running": step_run.status == Status.RUNNING,
        "form": form,
    }
    return render(request, "runs/mark.html", context, status=status)


def _mark_form(step_run, outcome: str, reason: str = "") -> MarkStepForm:
    outcome = outcome if outcome in actions.MARK_OUTCOMES else Status.SUCCEEDED
    return MarkStepForm(initial={"outcome": outcome, "status": step_run.status, "attempt": step_run.attempt,
                                 "reason": reason})


def _marked(plan: actions.MarkPlan) -> str:
    """The message after a mark: what it set going."""
    said = [f"Step {plan.step} is marked {Status(plan.outcome).label}."]
    if plan.run_now:
        said.append(f"Queued now: {', '.join(plan.run_now)}.")
    if plan.skipped:
        said.append(f"Upstream failed now: {', '.join(plan.skipped)}.")
    if plan.run_after != Status.RUNNING:
        said.append(f"The run finished {Status(plan.run_after).label}.")
    elif plan.reopens_run:
        said.append("The run is running again.")
    return " ".join(said)
