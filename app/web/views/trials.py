"""Models: start a shadow or canary trial of a version, promote it or abort it."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from app.mlmodels import trials
from app.models import TrialMode
from app.web.access import operator_required
from app.web.views.models import detail_context, get_model_or_404


@require_POST
@operator_required
def trial_start(request, name):
    """Start a trial; a refusal shows the model page again with the form as it was sent."""
    model = get_model_or_404(name)
    version = request.POST.get("version", "")
    mode = request.POST.get("mode", "")
    percent = request.POST.get("percent", "")
    try:
        trial = trials.start(model, version, mode, percent, request.user, request.POST.get("reason", ""))
    except trials.TrialRefused as exc:
        context = detail_context(get_model_or_404(name), request)
        if context["trial"] is not None:
            context["trial"]["error"] = str(exc)
            context["trial"]["values"] = {
                "version": version[:20], "mode": mode if mode in TrialMode.values else TrialMode.SHADOW,
                "percent": percent[:20], "reason": request.POST.get("reason", "")[:200],
            }
        else:
            messages.error(request, str(exc))
        return render(request, "models/detail.html", context, status=422)
    if trial.mode == TrialMode.CANARY:
        done = f"v{trial.version.version} answers {trial.percent} % of {model.name}'s requests from now on; the rest stay with the live version."
    else:
        done = f"v{trial.version.version} answers a copy of every request to {model.name} in shadow; its answers are logged, never returned."
    messages.success(request, done)
    return redirect(model)


@require_POST
@operator_required
def trial_promote(request, name):
    model = get_model_or_404(name)
    try:
        deployment = trials.promote(model, request.user, request.POST.get("reason", ""))
    except trials.TrialRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Promoted: v{deployment.version.version} of {model.name} is live and answers every request.")
    return redirect(model)


@require_POST
@operator_required
def trial_abort(request, name):
    model = get_model_or_404(name)
    try:
        trial = trials.abort(model, request.user, request.POST.get("reason", ""))
    except trials.TrialRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Trial aborted: v{trial.version.version} no longer answers; the live version answers every request.")
    return redirect(model)
