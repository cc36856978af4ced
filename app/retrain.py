"""Retrain and deploy: run a model's training pipeline with a parameter set, under a rule
that decides, when the run finishes, whether the version it registers goes live
(app.model_registry.decide_promotion)."""

from django.db import transaction

from app import paramsets
from app.models import ParameterSet, Promotion, RegisteredModel, Run


def retrain(model: RegisteredModel, parameter_set: ParameterSet, rule: str, metric: str, user) -> Run:
    """Start the run and record its rule in one transaction (raises paramsets.SetRefused)."""
    if parameter_set.pipeline_name != model.pipeline_name:
        raise paramsets.SetRefused(
            f"“{parameter_set.name}” belongs to {parameter_set.pipeline_name}, not to {model.pipeline_name}, "
            f"the pipeline that trains {model.name}."
        )
    with transaction.atomic():
        run = paramsets.run(parameter_set, user)
        Promotion.objects.create(
            run=run, model=model, rule=rule, metric=metric or model.headline_metric, requested_by=user
        )
    return run


def carry_over(original: Run, new: Run):
    """A retry or re-run of a retrain run keeps its rule (called in the retry's transaction)."""
    promotion = Promotion.objects.filter(run=original).first()
    if promotion is not None:
        Promotion.objects.create(
            run=new, model_id=promotion.model_id, rule=promotion.rule, metric=promotion.metric,
            requested_by=new.triggered_by,
        )

