"""Retrain and deploy: run a model's training pipeline with a parameter set, under a rule
that decides, when the run finishes, whether the version it registers goes live.

`retrain` starts the run and records its rule (a Promotion); `decide_promotion` listens for
the engine's `run_finished` signal and gives the verdict in the transaction that closes
the run, so a rule is applied exactly once, whichever process finishes the run.
"""

import logging

from django.db import transaction
from django.db.models import F
from django.dispatch import receiver
from django.utils import timezone

from app.mlmodels import deployments, trials
from app.models import (
    DeploymentKind,
    ModelVersion,
    ParameterSet,
    Promotion,
    PromotionRule,
    RegisteredModel,
    Run,
    Status,
    Verdict,
)
from app.runs import paramsets
from app.runs.signals import run_finished

log = logging.getLogger(__name__)


def retrain(model: RegisteredModel, parameter_set: ParameterSet, rule: str, metric: str, user,
            shadow_minutes: int = 0) -> Run:
    """Start the run and record its rule in one transaction (raises paramsets.SetRefused).
    With `shadow_minutes`, a version the rule picks answers in shadow that long before it
    goes live (app.mlmodels.trials)."""
    if parameter_set.pipeline_name != model.pipeline_name:
        raise paramsets.SetRefused(
            f"“{parameter_set.name}” belongs to {parameter_set.pipeline_name}, not to {model.pipeline_name}, "
            f"the pipeline that trains {model.name}."
        )
    with transaction.atomic():
        run = paramsets.run(parameter_set, user)
        Promotion.objects.create(
            run=run, model=model, rule=rule, metric=metric or model.headline_metric, requested_by=user,
            shadow_minutes=shadow_minutes or 0,
        )
    return run


def carry_over(original: Run, new: Run):
    """A retry or re-run of a retrain run keeps its rule (called in the retry's transaction)."""
    promotion = Promotion.objects.filter(run=original).first()
    if promotion is not None:
        Promotion.objects.create(
            run=new, model_id=promotion.model_id, rule=promotion.rule, metric=promotion.metric,
            requested_by=new.triggered_by, shadow_minutes=promotion.shadow_minutes,
        )


@receiver(run_finished, dispatch_uid="retrain-decide-promotion")
def decide_promotion(sender, run_id: int, status: str, **kwargs):
    """Apply the promotion rule of a retrain run that just finished (if it has one). Called
    inside the transaction that closes the run (the engine's `run_finished` signal); a
    failure here is recorded as the verdict and never undoes the run's own bookkeeping."""
    promotion = Promotion.objects.filter(run_id=run_id, verdict=Verdict.PENDING).select_related("requested_by").first()
    if promotion is None:
        return
    try:
        with transaction.atomic():
            verdict, message = _judge(promotion, status)
    except Exception as exc:
        log.exception("deciding the promotion of run #%s failed", run_id)
        verdict, message = Verdict.KEPT, f"not deployed: the rule could not be applied ({type(exc).__name__}: {exc})"
    promotion.verdict = verdict
    promotion.message = message[:300]
    promotion.decided_at = timezone.now()
    promotion.save()


def _judge(promotion: Promotion, run_status: str) -> tuple[str, str]:
    model = deployments.lock_model(promotion.model_id)
    live = model.live.version if model.live else None
    candidate = (
        ModelVersion.objects.filter(run_id=promotion.run_id, model=model, attempt=F("step_run__attempt"))
        .order_by("-version")
        .first()
    )
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
        deployments.check_deployable(candidate)
    except deployments.DeployRefused as exc:
        return Verdict.KEPT, f"not deployed: {exc}"
    if promotion.shadow_minutes and live is not None:
        return trials.start_shadow_period(model, promotion, candidate, reason)
    deployments.go_live(model, candidate, promotion.requested_by, reason, DeploymentKind.PROMOTE)
    message = f"deployed v{candidate.version}: " + reason.split(": ", 1)[1]
    if promotion.shadow_minutes:
        message += " (so no shadow period: there was nothing to compare with)"
    return Verdict.PROMOTED, message
