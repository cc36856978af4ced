"""The model registry: registering versions, deploying them, and retrain-and-deploy
verdicts.

- `register` is what `ctx.register_model` calls inside a step: the file goes to the artifact
  store first, then the version row is numbered under the model row's lock, so concurrent
  registrations of one name get 1, 2, 3 … with no gaps or repeats.
- `deploy`, `rollback` and `redeploy` make a new Deployment, retire the live one and point
  the model at the new one in one transaction, with an audit event; serving (app.serving)
  picks the change up on the next request in every process.
- `decide_promotion` runs when a run closes (app.engine_sql.close_run) and applies the rule
  of a retrain-and-deploy request (app.retrain) to the version the run registered.
"""

import logging
import re
import uuid

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from app import artifacts, audit, model_formats, result_tables, serving
from app.models import (
    AuditAction, Deployment, DeploymentKind, ModelVersion, Promotion, PromotionRule, RegisteredModel, Status, StepRun,
    Verdict,
)

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
REASON_MAX = 200
AUDIT_ACTIONS = {
    DeploymentKind.DEPLOY: AuditAction.DEPLOY,
    DeploymentKind.REDEPLOY: AuditAction.REDEPLOY,
    DeploymentKind.ROLLBACK: AuditAction.ROLLBACK,
    DeploymentKind.PROMOTE: AuditAction.PROMOTE,
}


class DeployRefused(Exception):
    """The deployment cannot happen; the message says why. Nothing was changed."""


def check_name(name) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"model name {name!r} must be 1 to 100 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name


def check_metrics(metrics) -> dict:
    """Metrics as {name: finite float}, or ValueError naming the bad entry."""
    if metrics is None:
        return {}
    if not isinstance(metrics, dict):
        raise ValueError(f"metrics must be a dict of name → number, not {type(metrics).__name__}")
    return {name: result_tables.check_metric(name, value) for name, value in metrics.items()}


def register(step_run: StepRun, name: str, obj, metrics=None, format: str = "joblib") -> ModelVersion:
    """Save `obj` as the next version of model `name`, with its metrics and lineage."""
    check_name(name)
    values = check_metrics(metrics)
    fmt = model_formats.get_format(format)
    relative = f"models/{name}/{uuid.uuid4().hex}{fmt.suffix}"
    path = artifacts.write_atomically(relative, lambda tmp: fmt.save(obj, tmp))
    n_features = getattr(obj, "n_features_in_", None)
    run = step_run.run
    try:
        with transaction.atomic():
            model, _created = RegisteredModel.objects.get_or_create(name=name)
            # The UPDATE takes the row's lock (SQLite's IMMEDIATE transactions serialise
            # anyway), so the number read back is ours alone until commit.
            RegisteredModel.objects.filter(pk=model.pk).update(
                latest_version=F("latest_version") + 1, pipeline_name=run.pipeline_name
            )
            if not model.headline_metric and values:
                RegisteredModel.objects.filter(pk=model.pk, headline_metric="").update(headline_metric=next(iter(values)))
            number = RegisteredModel.objects.values_list("latest_version", flat=True).get(pk=model.pk)
            return ModelVersion.objects.create(
                model=model, version=number, format=fmt.name, file_path=relative, file_size=path.stat().st_size,
                n_features=n_features if isinstance(n_features, int) else None, metrics=values,
                run_id=run.pk, step_run_id=step_run.pk, pipeline_name=run.pipeline_name, params=run.params,
                snapshot_id=run.snapshot_id,
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise


# --- deploying -------------------------------------------------------------------------


def check_reason(reason) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise DeployRefused("Give a short reason: it goes into the production history.")
    if len(reason) > REASON_MAX:
        raise DeployRefused(f"The reason is {len(reason)} characters long; keep it to {REASON_MAX}.")
    return reason


def check_deployable(version: ModelVersion):
    """Refuse a version whose step did not succeed or whose file cannot be loaded."""
    status = StepRun.objects.filter(pk=version.step_run_id).values_list("status", flat=True).first()
    if status is not None and status != Status.SUCCEEDED:
        raise DeployRefused(f"{version} was registered by a step that did not succeed ({status}); it cannot go live.")
    try:
        serving.load_version(version)
    except Exception as exc:
        raise DeployRefused(f"{version} cannot be loaded, so it cannot go live: {exc}") from None


def previous_live(model: RegisteredModel) -> ModelVersion | None:
    """The version that was live before the live one (what a rollback goes back to)."""
    if model.live_id is None:
        return None
    current = Deployment.objects.only("version_id").get(pk=model.live_id)
    earlier = (
        Deployment.objects.filter(model=model, pk__lt=current.pk)
        .exclude(version_id=current.version_id)
        .select_related("version__model")
        .order_by("-pk")
        .first()
    )
    return earlier.version if earlier else None


def _locked(model_id: int) -> RegisteredModel:
    return RegisteredModel.objects.select_for_update().select_related("live__version").get(pk=model_id)


def _go_live(model: RegisteredModel, version: ModelVersion, user, reason: str, kind: str) -> Deployment:
    """Inside a transaction holding the model's lock: retire the live deployment, start the new one."""
    now = timezone.now()
    previous = model.live.version if model.live else None
    if model.live_id:
        Deployment.objects.filter(pk=model.live_id).update(retired_at=now)
    signed_in = user is not None and user.is_authenticated
    deployment = Deployment.objects.create(
        model=model, version=version, kind=kind, reason=reason, deployed_at=now,
        deployed_by=user if signed_in else None, deployed_by_name=user.get_username() if signed_in else "",
    )
    RegisteredModel.objects.filter(pk=model.pk).update(live=deployment)
    details = {"reason": reason}
    if previous is not None:
        details["replaced"] = f"v{previous.version}"
    audit.record(user, AUDIT_ACTIONS[kind], version, details=details)
    return deployment


def _switch(model: RegisteredModel, target: ModelVersion, user, reason: str, kind: str) -> Deployment:
    """Make `target` live, unless the live deployment changed since `model` was read. Callers
    check the target first, outside the lock, since loading a model can take a while."""
    with transaction.atomic():
        locked = _locked(model.pk)
        if locked.live_id != model.live_id:
            raise DeployRefused(f"The live version of {model.name} changed meanwhile; look again and retry.")
        return _go_live(locked, target, user, reason, kind)


def _live_version(model: RegisteredModel) -> ModelVersion | None:
    if model.live_id is None:
        return None
    return Deployment.objects.select_related("version__model").get(pk=model.live_id).version


def check_can_deploy(version: ModelVersion) -> RegisteredModel:
    """Refuse a version that is live already or cannot go live; returns its model as read now."""
    model = RegisteredModel.objects.get(pk=version.model_id)
    if model.live_id is not None and _live_version(model).pk == version.pk:
        raise DeployRefused(f"{version} is already live; use “Redeploy” on the model page to reload it.")
    check_deployable(version)
    return model


def deploy(version: ModelVersion, user, reason: str) -> Deployment:
    """Make `version` the live version of its model."""
    reason = check_reason(reason)
    model = check_can_deploy(version)
    return _switch(model, version, user, reason, DeploymentKind.DEPLOY)


def rollback(model: RegisteredModel, user, reason: str) -> Deployment:
    """Go back to the version that was live before the live one."""
    reason = check_reason(reason)
    model = RegisteredModel.objects.get(pk=model.pk)
    target = previous_live(model)
    if target is None:
        raise DeployRefused(f"{model.name} has no earlier live version to roll back to.")
    check_deployable(target)
    return _switch(model, target, user, reason, DeploymentKind.ROLLBACK)


def redeploy(model: RegisteredModel, user, reason: str) -> Deployment:
    """Deploy the live version again: every process reloads it from the artifact store."""
    reason = check_reason(reason)
    model = RegisteredModel.objects.get(pk=model.pk)
    live_version = _live_version(model)
    if live_version is None:
        raise DeployRefused(f"No version of {model.name} is live, so there is nothing to redeploy.")
    check_deployable(live_version)
    return _switch(model, live_version, user, reason, DeploymentKind.REDEPLOY)


def compare(version: ModelVersion, live: ModelVersion | None) -> list[dict]:
    """Each metric of either version: this version's value, the live one's and the change."""
    names = list(version.metrics) + [n for n in (live.metrics if live else {}) if n not in version.metrics]
    rows = []
    for name in names:
        new = version.metrics.get(name)
        old = live.metrics.get(name) if live else None
        change = new - old if new is not None and old is not None else None
        rows.append({"name": name, "new": new, "old": old, "change": change})
    return rows


# --- retrain and deploy ------------------------------------------------------------------


def decide_promotion(run_id: int, run_status: str):
    """Apply the promotion rule of a retrain run that just finished (if it has one). Called
    inside the transaction that closes the run; a failure here is recorded as the verdict
    and never undoes the run's own bookkeeping."""
    promotion = Promotion.objects.filter(run_id=run_id, verdict=Verdict.PENDING).select_related("requested_by").first()
    if promotion is None:
        return
    try:
        with transaction.atomic():
            verdict, message = _judge(promotion, run_status)
    except Exception as exc:
        log.exception("deciding the promotion of run #%s failed", run_id)
        verdict, message = Verdict.KEPT, f"not deployed: the rule could not be applied ({type(exc).__name__}: {exc})"
    promotion.verdict = verdict
    promotion.message = message[:300]
    promotion.decided_at = timezone.now()
    promotion.save()


def _judge(promotion: Promotion, run_status: str) -> tuple[str, str]:
    model = _locked(promotion.model_id)
    live = model.live.version if model.live else None
    candidate = ModelVersion.objects.filter(run_id=promotion.run_id, model=model).order_by("-version").first()
    metric = promotion.metric
    promotion.live_version = live
    promotion.candidate = candidate
    promotion.live_value = live.metrics.get(metric) if live and metric else None
    promotion.candidate_value = candidate.metrics.get(metric) if candidate and metric else None
    if run_status != Status.SUCCEEDED:
        return Verdict.KEPT, f"not deployed: the run {Status(run_status).label}"
    if candidate is None:
        return Verdict.KEPT, f"not deployed: the run registered no version of {model.name}"
    new, old = promotion.candidate_value, promotion.live_value
    if promotion.rule == PromotionRule.NEVER:
        return Verdict.KEPT, f"not deployed: the rule is never auto-deploy (v{candidate.version} is registered)"
    if new is None:
        return Verdict.KEPT, f"not deployed: v{candidate.version} has no metric {metric!r}"
    if live is not None and old is None:
        return Verdict.KEPT, f"not deployed: the live v{live.version} has no metric {metric!r} to compare with"
    if live is not None:
        better = new >= old if promotion.rule == PromotionRule.AT_LEAST else new <= old
        sign = "≥" if promotion.rule == PromotionRule.AT_LEAST else "≤"
        if not better:
            return Verdict.KEPT, f"not deployed: {metric} {new:.4g} is not {sign} live v{live.version}'s {old:.4g}"
        reason = f"retrain run #{promotion.run_id}: {metric} {new:.4g} {sign} v{live.version}'s {old:.4g}"
    else:
        reason = f"retrain run #{promotion.run_id}: no version was live"
    try:
        check_deployable(candidate)
    except DeployRefused as exc:
        return Verdict.KEPT, f"not deployed: {exc}"
    _go_live(model, candidate, promotion.requested_by, reason, DeploymentKind.PROMOTE)
    return Verdict.PROMOTED, f"deployed v{candidate.version}: " + reason.split(": ", 1)[1]
