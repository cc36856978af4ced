"""Deploying model versions: deploy, rollback and redeploy, and the checks they share.

Each makes a new Deployment, retires the live one and points the model at the new one in one
transaction holding the model row's lock, with an audit event; serving (app.mlmodels.serving)
picks the change up on the next request in every process. Versions themselves are
registered below the engine (app.tracking.versions); the retrain rule that deploys one
automatically when its run finishes is app.mlmodels.retrain.
"""

from django.db import transaction
from django.utils import timezone

from app.mlmodels import serving
from app.models import (
    AuditAction,
    Deployment,
    DeploymentKind,
    ModelVersion,
    RegisteredModel,
    Status,
    StepRun,
    Trial,
    TrialOutcome,
)
from app.runs import audit

REASON_MAX = 200
AUDIT_ACTIONS = {
    DeploymentKind.DEPLOY: AuditAction.DEPLOY,
    DeploymentKind.REDEPLOY: AuditAction.REDEPLOY,
    DeploymentKind.ROLLBACK: AuditAction.ROLLBACK,
    DeploymentKind.PROMOTE: AuditAction.PROMOTE,
    DeploymentKind.TRIAL: AuditAction.TRIAL_PROMOTE,
}


class DeployRefused(Exception):
    """The deployment cannot happen; the message says why. Nothing was changed."""


def check_reason(reason) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise DeployRefused("Give a short reason: it goes into the production history.")
    if len(reason) > REASON_MAX:
        raise DeployRefused(f"The reason is {len(reason)} characters long; keep it to {REASON_MAX}.")
    return reason


def check_deployable(version: ModelVersion):
    """Refuse a version whose step did not succeed, that an attempt other than the recorded
    one registered, or whose file cannot be loaded."""
    step = StepRun.objects.filter(pk=version.step_run_id).values("status", "attempt").first()
    if step is not None and step["status"] != Status.SUCCEEDED:
        raise DeployRefused(
            f"{version} was registered by a step that did not succeed ({step['status']}); it cannot go live."
        )
    if step is not None and version.attempt != step["attempt"]:
        raise DeployRefused(
            f"{version} was registered by attempt {version.attempt} of a step that succeeded on attempt "
            f"{step['attempt']}; only what the successful attempt registered can go live."
        )
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


def lock_model(model_id: int) -> RegisteredModel:
    """The model row, locked until the end of the transaction (call inside one)."""
    # Only the model's own row: PostgreSQL refuses FOR UPDATE on the nullable side of the
    # outer join a select_related("live") would add (SQLite ignores FOR UPDATE altogether).
    return RegisteredModel.objects.select_for_update(of=("self",)).select_related("live__version").get(pk=model_id)


def go_live(model: RegisteredModel, version: ModelVersion, user, reason: str, kind: str) -> Deployment:
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
    # A trial compares a candidate with the live version: a new live version ends it (a
    # redeploy of the same version does not). Deploying the candidate itself promotes it.
    if model.trial_id is not None and (previous is None or previous.pk != version.pk):
        trial = Trial.objects.select_related("version__model").get(pk=model.trial_id)
        outcome = TrialOutcome.PROMOTED if trial.version_id == version.pk else TrialOutcome.REPLACED
        end_trial(model, trial, outcome, user, reason, now)
        details["trial"] = f"{trial}: {TrialOutcome(outcome).label}"
    audit.record(user, AUDIT_ACTIONS[kind], version, details=details)
    return deployment


def end_trial(model: RegisteredModel, trial: Trial, outcome: str, user, reason: str, now=None):
    """Inside a transaction holding the model's lock: end its running trial."""
    signed_in = user is not None and user.is_authenticated
    Trial.objects.filter(pk=trial.pk).update(
        ended_at=now or timezone.now(), outcome=outcome, end_reason=reason[:200],
        ended_by_name=user.get_username() if signed_in else "",
    )
    RegisteredModel.objects.filter(pk=model.pk, trial_id=trial.pk).update(trial=None)
    model.trial_id = None


def _switch(model: RegisteredModel, target: ModelVersion, user, reason: str, kind: str) -> Deployment:
    """Make `target` live, unless the live deployment changed since `model` was read. Callers
    check the target first, outside the lock, since loading a model can take a while."""
    with transaction.atomic():
        locked = lock_model(model.pk)
        if locked.live_id != model.live_id:
            raise DeployRefused(f"The live version of {model.name} changed meanwhile; look again and retry.")
        return go_live(locked, target, user, reason, kind)


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
