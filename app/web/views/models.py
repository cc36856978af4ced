"""Models: the registry's pages, deploy / redeploy / rollback, and retrain-and-deploy."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from app.mlmodels import deployments, drift, retrain, trials
from app.models import Deployment, ModelVersion, Promotion, RegisteredModel, ResultTable, Status, StepRun
from app.runs import paramsets
from app.tracking import results
from app.web import feedback_card, health_card, tables
from app.web.access import operator_required
from app.web.forms import ReasonForm, RetrainForm

VERSIONS_PER_PAGE = 50


def get_model_or_404(name) -> RegisteredModel:
    try:
        return RegisteredModel.objects.select_related("live__version", "live__deployed_by").get(name=name)
    except RegisteredModel.DoesNotExist:
        raise Http404(f"There is no model named “{name}”.") from None


def get_version_or_404(name, number) -> ModelVersion:
    try:
        return ModelVersion.objects.select_related("model__live", "run", "step_run", "snapshot").get(
            model__name=name, version=number
        )
    except ModelVersion.DoesNotExist:
        raise Http404(f"Model “{name}” has no version {number}.") from None


def results_of(step_run_id):
    """The result tables a step attached (to its run and the version it registered)."""
    if step_run_id is None:
        return []
    return tables.with_heatmaps(results.of_recorded_attempts(ResultTable.objects.filter(step_run_id=step_run_id)))


def metric_names(model) -> list[str]:
    """Every metric any version of the model has, the headline first."""
    names = {}
    for metrics in model.versions.values_list("metrics", flat=True):
        names.update(dict.fromkeys(metrics))
    ordered = sorted(names)
    if model.headline_metric in names:
        ordered.remove(model.headline_metric)
        ordered.insert(0, model.headline_metric)
    return ordered


def sorted_versions(model, names, sort, descending):
    """All versions, sorted by `sort` (a metric name, or "version"); versions without the
    metric go last whichever the direction."""
    versions = list(model.versions.select_related("run").order_by("-version"))
    if sort in names:
        present = [v for v in versions if v.metrics.get(sort) is not None]
        missing = [v for v in versions if v.metrics.get(sort) is None]
        present.sort(key=lambda v: v.metrics[sort], reverse=descending)
        return present + missing
    return versions if descending else versions[::-1]


@require_GET
@operator_required
def model_list(request):
    models = RegisteredModel.objects.select_related("live__version").annotate(version_count=Count("versions"))
    rows = []
    for model in models:
        live = model.live.version if model.live else None
        rows.append({
            "model": model,
            "live": live,
            "headline": live.metrics.get(model.headline_metric) if live else None,
        })
    return render(request, "models/list.html", {"rows": rows})


def detail_context(model, request, retrain_form=None):
    names = metric_names(model)
    sort = request.GET.get("sort", "version")
    sort = sort if sort in names else "version"
    descending = request.GET.get("order", "desc") != "asc"
    versions = sorted_versions(model, names, sort, descending)
    page = Paginator(versions, VERSIONS_PER_PAGE).get_page(request.GET.get("page"))
    live_version = model.live.version if model.live else None
    ever_live = set(Deployment.objects.filter(model=model).values_list("version_id", flat=True))
    succeeded = set(
        StepRun.objects.filter(model_versions__model=model, status=Status.SUCCEEDED).values_list("pk", flat=True)
    )
    rows = [
        {"version": v, "values": [v.metrics.get(n) for n in names], "ever_live": v.pk in ever_live,
         "deployable": v.step_run_id is None or v.step_run_id in succeeded}
        for v in page
    ]
    return {
        "model": model,
        "live": live_version,
        "previous": deployments.previous_live(model),
        "names": names,
        "rows": rows,
        "page": page,
        "sort": sort,
        "descending": descending,
        "history": Deployment.objects.filter(model=model).select_related("version", "deployed_by")[:50],
        "promotions": Promotion.objects.filter(model=model).select_related(
            "run", "requested_by", "candidate", "live_version"
        )[:20],
        "retrain_form": retrain_form or RetrainForm(model, names),
        "reason_form": ReasonForm(),
        # Monitoring (app.mlmodels): each is None when it has nothing to show.
        "health": health_card.card(model, request),
        "trial": trials.page(model),
        "drift": drift.page(model),
        "feedback": feedback_card.card(model),
    }


@require_GET
@operator_required
def model_detail(request, name):
    model = get_model_or_404(name)
    return render(request, "models/detail.html", detail_context(model, request))


@require_GET
@operator_required
def model_version(request, name, number):
    version = get_version_or_404(name, number)
    live = version.model.live
    return render(request, "models/version.html", {
        "version": version,
        "model": version.model,
        "is_live": live is not None and live.version_id == version.pk,
        "deployments": version.deployments.select_related("deployed_by"),
        "tables": results_of(version.step_run_id),
        "step_status": version.step_run.status if version.step_run else None,
    })


@require_http_methods(["GET", "POST"])
@operator_required
def version_deploy(request, name, number):
    """GET: the confirmation (metrics against the live version, a reason); POST: deploy."""
    version = get_version_or_404(name, number)
    model = get_model_or_404(name)
    live = model.live.version if model.live else None
    form = ReasonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            deployments.deploy(version, request.user, form.cleaned_data["reason"])
        except deployments.DeployRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"{version} is live. Predictions come from it from now on.")
            return redirect(model)
    status = 422 if request.method == "POST" else 200
    refusal = None
    if request.method == "GET":
        # Say so before the operator writes a reason, not after.
        try:
            deployments.check_can_deploy(version)
        except deployments.DeployRefused as exc:
            refusal = str(exc)
    return render(request, "models/deploy.html", {
        "version": version, "model": model, "live": live, "form": form, "refusal": refusal,
        "comparison": deployments.compare(version, live),
        "headline": model.headline_metric,
    }, status=status)


def _reason_action(request, name, action, done):
    model = get_model_or_404(name)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors["reason"]))
        return redirect(model)
    try:
        deployment = action(model, request.user, form.cleaned_data["reason"])
    except deployments.DeployRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done(deployment))
    return redirect(model)


@require_POST
@operator_required
def model_rollback(request, name):
    return _reason_action(
        request, name, deployments.rollback,
        lambda d: f"Rolled back: v{d.version.version} of {d.model.name} is live again.",
    )


@require_POST
@operator_required
def model_redeploy(request, name):
    return _reason_action(
        request, name, deployments.redeploy,
        lambda d: f"v{d.version.version} of {d.model.name} redeployed: every web process reloads it on its next request.",
    )


@require_POST
@operator_required
def model_retrain(request, name):
    model = get_model_or_404(name)
    form = RetrainForm(model, metric_names(model), request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            run = retrain.retrain(model, data["parameter_set"], data["rule"], data["metric"], request.user,
                                  shadow_minutes=data.get("shadow_minutes") or 0)
        except paramsets.SetRefused as exc:
            form.add_error("parameter_set", str(exc))
        else:
            messages.success(request, f"Run #{run.pk} retrains {model.name}; its verdict shows here when it finishes.")
            return redirect(run)
    return render(request, "models/detail.html", detail_context(model, request, form), status=422)
