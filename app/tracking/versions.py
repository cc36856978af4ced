"""Registering model versions: what `ctx.register_model` does inside a step.

A version belongs to the attempt that registered it: if that attempt fails or is lost and a
later one succeeds, only the later one's version may go live (app.mlmodels.deployments).

The file goes to the artifact store first, then the version row is numbered under the model
row's lock, so concurrent registrations of one name get 1, 2, 3 … with no gaps or repeats.
This sits below the engine (which calls it) and knows nothing of deploying; what happens to
a version afterwards (deploy, rollback, serving, retrain rules) is app.mlmodels.

A `reference` (the training inputs) is summarised by app.tracking.profiles before anything
is written, so a bad one fails the step with its reason and stores nothing; the profile row
is created with the version, in the same transaction.
"""

import re
import uuid

from django.db import transaction
from django.db.models import F

from app import artifacts
from app.models import ModelVersion, ReferenceProfile, RegisteredModel, StepRun
from app.tracking import formats, profiles, results

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


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
    return {name: results.check_metric(name, value) for name, value in metrics.items()}


def register(
    step_run: StepRun, name: str, obj, metrics=None, format: str = "joblib", *, reference=None,
    reference_predictions=None, feature_names=None,
) -> ModelVersion:
    """Save `obj` as the next version of model `name`, with its metrics and lineage, and the
    profile of its `reference` inputs when given (app.tracking.profiles)."""
    check_name(name)
    values = check_metrics(metrics)
    profile = reference_profile(obj, reference, reference_predictions, feature_names)
    fmt = formats.get_format(format)
    relative = f"models/{name}/{uuid.uuid4().hex}{fmt.suffix}"
    file_size = artifacts.write_atomically(relative, lambda tmp: fmt.save(obj, tmp))
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
            version = ModelVersion.objects.create(
                model=model, version=number, format=fmt.name, file_path=relative, file_size=file_size,
                n_features=n_features if isinstance(n_features, int) else None, metrics=values,
                run_id=run.pk, step_run_id=step_run.pk, attempt=step_run.attempt, pipeline_name=run.pipeline_name,
                params=run.params,
                snapshot_id=run.snapshot_id,
            )
            if profile is not None:
                ReferenceProfile.objects.create(version=version, **profile)
            return version
    except BaseException:
        artifacts.delete(relative)
        raise


def reference_profile(obj, reference, reference_predictions, feature_names) -> dict | None:
    """The ReferenceProfile fields of a registration, None without a reference, or
    ValueError naming what is wrong with it."""
    if reference is None:
        if reference_predictions is not None or feature_names is not None:
            raise ValueError(
                "reference_predictions= and feature_names= describe a reference: pass reference=X_train too"
            )
        return None
    return profiles.build(obj, reference, reference_predictions, feature_names)
