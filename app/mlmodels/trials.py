"""Shadow and canary trials of a candidate version next to the live one.

A trial is a `Trial` row the model points at (RegisteredModel.trial); serving
(app.mlmodels.serving) reads it with the live deployment on every request, so a start,
promote or abort is seen by the next request in every process. In **shadow** the candidate
answers a copy of each live request off the request path (logged with role "shadow", never
returned); as a **canary** it answers `percent` % of requests. `start`, `promote` and
`abort` each run in one transaction holding the model row's lock, like deploy and rollback
(app.mlmodels.deployments), with an audit event. Promoting is a deployment of kind "trial";
any other change of the live version ends a running trial (deployments.go_live). A retrain
rule may ask for a shadow period (Promotion.shadow_minutes): the trial then carries
`promote_after`, and the worker's monitoring job promotes it when that time has passed
(`promote_due`).
"""

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Avg, Count, F, Q
from django.utils import timezone

from app.mlmodels import deployments
from app.models import (
    AuditAction,
    DeploymentKind,
    ModelVersion,
    Prediction,
    Promotion,
    RegisteredModel,
    Role,
    Status,
    StepRun,
    Trial,
    TrialMode,
    TrialOutcome,
    Verdict,
)
from app.runs import audit

log = logging.getLogger(__name__)


class TrialRefused(deployments.DeployRefused):
    """The trial cannot start, be promoted or aborted; the message says why. Nothing changed."""


def _reason(reason) -> str:
    try:
        return deployments.check_reason(reason)
    except deployments.DeployRefused as exc:
        raise TrialRefused(str(exc)) from None


def _percent(mode: str, percent) -> int:
    if mode == TrialMode.SHADOW:
        return 0
    text = str(percent if percent is not None else "").strip().rstrip("%").strip()
    try:
        value = int(text)
    except ValueError:
        raise TrialRefused(
            f"The canary's share must be a whole number of percent from 1 to 99, not “{text[:20]}”."
        ) from None
    if not 1 <= value <= 99:
        raise TrialRefused(
            f"The canary's share must be from 1 to 99 % (it is {value} %): 0 would be no canary at all, "
            "100 would be a deploy."
        )
    return value


def describe(trial: Trial) -> str:
    """“v2 in shadow” or “v2 as a canary for 20 % of requests”."""
    if trial.mode == TrialMode.CANARY:
        return f"v{trial.version.version} as a canary for {trial.percent} % of requests"
    return f"v{trial.version.version} in shadow"


def _running(model: RegisteredModel) -> Trial | None:
    if model.trial_id is None:
        return None
    return Trial.objects.select_related("version__model").get(pk=model.trial_id)


def start(model: RegisteredModel, version, mode: str, percent, user, reason: str, *,
          promote_after=None, promotion=None) -> Trial:
    """Put `version` (a ModelVersion or its number) in shadow or canary next to the live version."""
    reason = _reason(reason)
    if mode not in TrialMode.values:
        raise TrialRefused("Pick how the candidate takes part: shadow (a copy of live traffic) or canary (a share of it).")
    percent = _percent(mode, percent)
    model = RegisteredModel.objects.get(pk=model.pk)
    version = _version_of(model, version)
    with transaction.atomic():
        locked = deployments.lock_model(model.pk)
        _check_can_start(locked, version)
    try:
        deployments.check_deployable(version)  # outside the lock: loading a model takes a while
    except deployments.DeployRefused as exc:
        raise TrialRefused(str(exc).replace("it cannot go live", "it cannot be tried").replace(
            "so it cannot go live", "so it cannot be tried")) from None
    with transaction.atomic():
        locked = deployments.lock_model(model.pk)
        if locked.live_id != model.live_id:
            raise TrialRefused(f"The live version of {model.name} changed meanwhile; look again and retry.")
        return start_locked(locked, version, mode, percent, user, reason, promote_after=promote_after,
                            promotion=promotion)


def _version_of(model: RegisteredModel, version) -> ModelVersion:
    if isinstance(version, ModelVersion):
        if version.model_id != model.pk:
            raise TrialRefused(f"{version} is not a version of {model.name}.")
        return ModelVersion.objects.select_related("model").get(pk=version.pk)
    try:
        number = int(str(version).strip().lstrip("v"))
    except ValueError:
        raise TrialRefused(f"Pick a version of {model.name} to try.") from None
    found = ModelVersion.objects.select_related("model").filter(model=model, version=number).first()
    if found is None:
        raise TrialRefused(f"{model.name} has no version {number}.")
    return found


def _check_can_start(locked: RegisteredModel, version: ModelVersion):
    if locked.live_id is None:
        raise TrialRefused(
            f"No version of {locked.name} is live: a trial compares a candidate with the live version. Deploy one first."
        )
    if locked.live.version_id == version.pk:
        raise TrialRefused(f"{version} is the live version; pick another version to try next to it.")
    running = _running(locked)
    if running is not None:
        raise TrialRefused(
            f"{describe(running)} is on trial already (since {timezone.localtime(running.started_at):%Y-%m-%d %H:%M}); "
            "promote or abort it first."
        )


def start_locked(locked: RegisteredModel, version: ModelVersion, mode: str, percent: int, user, reason: str, *,
                 promote_after=None, promotion=None, now=None) -> Trial:
    """Inside a transaction holding the model's lock (the retrain rule calls this): start the trial."""
    _check_can_start(locked, version)
    signed_in = user is not None and user.is_authenticated
    trial = Trial.objects.create(
        model=locked, version=version, mode=mode, percent=percent if mode == TrialMode.CANARY else 0,
        reason=reason, started_by=user if signed_in else None,
        started_by_name=user.get_username() if signed_in else "", started_at=now or timezone.now(),
        promote_after=promote_after, promotion=promotion,
    )
    RegisteredModel.objects.filter(pk=locked.pk).update(trial=trial)
    locked.trial_id = trial.pk
    details = {"reason": reason, "mode": mode, "live": f"v{locked.live.version.version}"}
    if mode == TrialMode.CANARY:
        details["percent"] = percent
    if promote_after is not None:
        details["promote_after"] = promote_after.isoformat()
    audit.record(user, AuditAction.TRIAL_START, trial, details=details)
    return trial


def promote(model: RegisteredModel, user, reason: str):
    """Make the candidate on trial the live version (a deployment of kind "trial")."""
    reason = _reason(reason)
    model = RegisteredModel.objects.get(pk=model.pk)
    trial = _running(model)
    if trial is None:
        raise TrialRefused(f"No trial of {model.name} is running, so there is nothing to promote.")
    try:
        deployments.check_deployable(trial.version)
    except deployments.DeployRefused as exc:
        raise TrialRefused(f"{exc} Abort the trial instead.") from None
    with transaction.atomic():
        locked = deployments.lock_model(model.pk)
        if locked.trial_id != trial.pk or locked.live_id != model.live_id:
            raise TrialRefused(f"The trial or the live version of {model.name} changed meanwhile; look again and retry.")
        return deployments.go_live(locked, trial.version, user, reason, DeploymentKind.TRIAL)


def abort(model: RegisteredModel, user, reason: str) -> Trial:
    """End the trial: the live version answers everything again."""
    reason = _reason(reason)
    with transaction.atomic():
        locked = deployments.lock_model(model.pk)
        trial = _running(locked)
        if trial is None:
            raise TrialRefused(f"No trial of {locked.name} is running, so there is nothing to abort.")
        deployments.end_trial(locked, trial, TrialOutcome.ABORTED, user, reason)
        audit.record(user, AuditAction.TRIAL_ABORT, trial, details={"reason": reason, "mode": trial.mode})
        if trial.promotion_id is not None:
            Promotion.objects.filter(pk=trial.promotion_id, verdict=Verdict.SHADOW).update(
                verdict=Verdict.KEPT, decided_at=timezone.now(),
                message=f"not deployed: the shadow of v{trial.version.version} was aborted: {reason}"[:300],
            )
    trial.refresh_from_db()
    return trial


def start_shadow_period(locked: RegisteredModel, promotion: Promotion, candidate: ModelVersion, reason: str):
    """The retrain rule picked `candidate` and asked for a shadow period: (verdict, message)."""
    minutes = promotion.shadow_minutes
    running = _running(locked)
    if running is not None:
        return Verdict.KEPT, (
            f"not deployed: v{candidate.version} passed the rule but {describe(running)} is on trial already; "
            "promote or abort it, then deploy or try v" + str(candidate.version)
        )
    now = timezone.now()
    start_locked(
        locked, candidate, TrialMode.SHADOW, 0, promotion.requested_by, reason[:200],
        promote_after=now + timedelta(minutes=minutes), promotion=promotion, now=now,
    )
    return Verdict.SHADOW, (
        f"v{candidate.version} answers in shadow for {minutes} min, then goes live: " + reason.split(": ", 1)[-1]
    )


def promote_due(now=None) -> int:
    """Promote the trials whose shadow period is over (the worker's monitoring job); how many."""
    now = now or timezone.now()
    due = Trial.objects.filter(ended_at__isnull=True, promote_after__lte=now, model__trial=F("pk")).select_related(
        "version__model", "promotion__requested_by", "model"
    )
    promoted = 0
    for trial in due:
        minutes = trial.promotion.shadow_minutes if trial.promotion else None
        period = f"{minutes} min" if minutes else "its time"
        reason = f"shadow period of {period} is over" + (f" (retrain run #{trial.promotion.run_id})" if trial.promotion else "")
        user = trial.promotion.requested_by if trial.promotion else trial.started_by
        try:
            promote(trial.model, user, reason)
        except deployments.DeployRefused as exc:
            log.warning("the shadow of %s was not promoted: %s", trial.version, exc)
            try:  # else every period would try again
                abort(trial.model, None, f"not promoted after the shadow period: {exc}")
            except deployments.DeployRefused:
                pass
            if trial.promotion_id:
                Promotion.objects.filter(pk=trial.promotion_id).update(
                    verdict=Verdict.KEPT, decided_at=timezone.now(),
                    message=f"not deployed after the shadow period: {exc}"[:300],
                )
            continue
        promoted += 1
        if trial.promotion_id:
            stats = shadow_stats(trial)
            agreed = f"; it agreed with live on {stats['agreement'] * 100:.1f} % of copies" if stats.get("agreement") is not None else ""
            Promotion.objects.filter(pk=trial.promotion_id).update(
                verdict=Verdict.PROMOTED, decided_at=timezone.now(),
                message=f"deployed v{trial.version.version} after {period} in shadow{agreed}"[:300],
            )
    return promoted


# --- the page ----------------------------------------------------------------------------


def _percentiles(rows, n: int) -> tuple[float | None, float | None]:
    """p50 and p95 of the latency of `rows` (a queryset of n rows), each one indexed SQL query."""
    if n == 0:
        return None, None
    ordered = rows.order_by("latency_ms").values_list("latency_ms", flat=True)
    return ordered[(n - 1) // 2], ordered[min(n - 1, int(0.95 * n))]


def _role_stats(base, role: str, version_id: int) -> dict:
    rows = base.filter(role=role, version_id=version_id)
    totals = rows.aggregate(
        requests=Count("id"), errors=Count("id", filter=~Q(status=200)), agreement=Avg("agreement"),
    )
    requests = totals["requests"]
    p50, p95 = _percentiles(rows, requests)
    return {
        "requests": requests,
        "errors": totals["errors"],
        "error_pct": totals["errors"] * 100 / requests if requests else None,
        "p50": p50,
        "p95": p95,
        "agreement": totals["agreement"],
    }


def stats(trial: Trial) -> dict:
    """The candidate's requests since the trial started next to the live version's."""
    base = Prediction.objects.filter(model_id=trial.model_id, at__gte=trial.started_at)
    if trial.ended_at:
        base = base.filter(at__lte=trial.ended_at)
    role = Role.SHADOW if trial.mode == TrialMode.SHADOW else Role.CANARY
    candidate = _role_stats(base, role, trial.version_id)
    live_version_id = trial.model.live.version_id if trial.model.live_id else None
    live = _role_stats(base, Role.LIVE, live_version_id) if live_version_id else None
    result = {"candidate": candidate, "live": live}
    if trial.mode == TrialMode.SHADOW and live is not None:
        live_ok = base.filter(role=Role.LIVE, status=200).count()
        # copies not answered: dropped from a full queue, or answered and not logged yet
        result["missing"] = max(0, live_ok - candidate["requests"])
        result["agreement_pct"] = candidate["agreement"] * 100 if candidate["agreement"] is not None else None
    total = candidate["requests"] + (live["requests"] if live else 0)
    if trial.mode == TrialMode.CANARY and total:
        result["share_pct"] = candidate["requests"] * 100 / total
    return result


def shadow_stats(trial: Trial) -> dict:
    base = Prediction.objects.filter(model_id=trial.model_id, role=Role.SHADOW, version_id=trial.version_id,
                                     at__gte=trial.started_at)
    return base.aggregate(agreement=Avg("agreement"), copies=Count("id"))


def candidates(model: RegisteredModel) -> list[ModelVersion]:
    """The versions a trial may try: registered by the recorded attempt of a step that
    succeeded (or by no step), other than the live one; newest first."""
    live_version_id = model.live.version_id if model.live_id else None
    succeeded = StepRun.objects.filter(status=Status.SUCCEEDED)
    versions = ModelVersion.objects.filter(model=model).filter(
        Q(step_run__isnull=True) | Q(step_run__in=succeeded, attempt=F("step_run__attempt"))
    ).select_related("model").order_by("-version")
    return [v for v in versions[:100] if v.pk != live_version_id]


def page(model) -> dict | None:
    """What templates/models/_trial.html shows; None hides the section (no version ever
    went live and no trial was ever tried)."""
    model = RegisteredModel.objects.select_related("live__version", "trial__version__model", "trial__started_by").get(
        pk=model.pk
    )
    history = list(Trial.objects.filter(model=model).select_related("version")[:50])
    if model.live_id is None and not history:
        return None
    running = model.trial
    if running is not None:
        running.model = model
    return {
        "running": running,
        "stats": stats(running) if running else None,
        "candidates": candidates(model) if running is None and model.live_id else [],
        "history": history,
        "modes": TrialMode.choices,
        "values": {"mode": TrialMode.SHADOW, "percent": 10},
        "error": None,
    }
