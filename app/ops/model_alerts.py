"""Alert conditions about live models, registered in app.ops.alerts.CONDITIONS: the error
rate, the p95 latency, input drift and silence of each live model (a rule's `model_name`, or
every live model when it is empty). Each model is its own subject ("model fraud"), so each
has its own incident; a model that stops being live is no longer found, so its incident
closes as recovered.

Errors, latency and silence read the prediction log itself (app.models.Prediction, indexed
on (model, at)) over the rule's last `minutes`, not the per-minute roll-up: the roll-up is
behind by up to a monitoring period and its latency bins are coarse, while the window of an
alert is minutes of rows. Per evaluation: one grouped count for all models, then for each
model over its threshold one query for its last error or one for its p95 (ordered by
latency, one row at an offset). Only what clients were answered counts: live and canary
rows, never shadow rows.

A rate or a percentile of two requests says nothing, so errors and latency are judged only
on at least MIN_REQUESTS requests in the window. Below that an open incident stays open
(its detail says why) instead of closing as recovered and opening again at the next burst:
it recovers when enough requests show the model well, or when the model stops being live.

Drift reads the latest DriftReport of the live version that has a PSI (written by the
monitoring job, app.mlmodels.drift; one without, from too few sampled rows, judges nothing):
a report older than twice DRIFT_WINDOW_HOURS is out of date and says nothing, and a report
of a version that is no longer live is not looked at.
"""

import datetime
import math

from django.conf import settings
from django.db.models import Count, Q

from app.models import Condition, DriftReport, Prediction, RegisteredModel, Role
from app.ops.findings import Finding, duration

MIN_REQUESTS = 20
SERVED = (Role.LIVE, Role.CANARY)  # shadow answers are never returned to a client

MODEL_CONDITIONS = (Condition.MODEL_ERRORS, Condition.MODEL_LATENCY, Condition.MODEL_DRIFT, Condition.MODEL_SILENT)
THRESHOLD_UNITS = {Condition.MODEL_ERRORS: " %", Condition.MODEL_LATENCY: " ms", Condition.MODEL_DRIFT: ""}


def subject(model: RegisteredModel) -> str:
    return f"model {model.name}"


def _live_models(rule):
    models = RegisteredModel.objects.filter(live__isnull=False).select_related("live__version").order_by("name")
    if rule.model_name:
        models = models.filter(name=rule.model_name)
    return list(models)


def _threshold(rule) -> float:
    if rule.threshold is None:  # the rule page refuses this; a rule made in code may lack it
        raise ValueError(f"rule “{rule.name}” ({rule.condition}) has no threshold: set one on its page")
    return rule.threshold


def _window(rule, now) -> tuple[datetime.datetime, int]:
    minutes = max(1, rule.minutes)
    return now - datetime.timedelta(minutes=minutes), minutes


def _served(model_ids, start, now):
    return Prediction.objects.filter(model_id__in=model_ids, role__in=SERVED, at__gt=start, at__lte=now)


def _counts(models, start, now) -> dict[int, dict]:
    """{model id: {n, errors, e5}} over the window, in one grouped query."""
    rows = (
        _served([m.pk for m in models], start, now)
        .values("model_id")
        .annotate(n=Count("id"), errors=Count("id", filter=Q(status__gte=400)), e5=Count("id", filter=Q(status__gte=500)))
        .order_by()
    )
    return {row["model_id"]: row for row in rows}


def _open_summaries(rule) -> dict[str, str]:
    return dict(rule.incidents.filter(closed_at__isnull=True).values_list("subject", "summary"))


def _too_few(rule, model, n, minutes, what, open_) -> Finding | None:
    """An open incident stays open while the window holds too few requests to judge."""
    summary = open_.get(subject(model))
    if summary is None:
        return None
    unit = THRESHOLD_UNITS[rule.condition]
    return Finding(summary, f"Now {n} request(s) in the last {duration(minutes)}: too few to judge (at least "
                            f"{MIN_REQUESTS}); it stays open until enough show the {what} at or below "
                            f"{rule.threshold:g}{unit}.", model.get_absolute_url())


def _judged(rule, now, what: str, found: dict):
    """The live models `rule` watches that served at least MIN_REQUESTS in its window, as
    (model, counts, window start, minutes); for the others, what `_too_few` keeps (an open
    incident's finding) goes into `found`."""
    start, minutes = _window(rule, now)
    models = _live_models(rule)
    counts = _counts(models, start, now)
    open_ = _open_summaries(rule)
    for model in models:
        row = counts.get(model.pk, {"n": 0, "errors": 0, "e5": 0})
        if row["n"] < MIN_REQUESTS:
            kept = _too_few(rule, model, row["n"], minutes, what, open_)
            if kept:
                found[subject(model)] = kept
            continue
        yield model, row, start, minutes


def _model_errors(rule, now):
    found = {}
    for model, row, start, minutes in _judged(rule, now, "error rate", found):
        n, errors = row["n"], row["errors"]
        rate = 100.0 * errors / n
        if rate <= _threshold(rule):
            continue
        last = (_served([model.pk], start, now).filter(status__gte=400).order_by("-at", "-id")
                .values_list("status", "error").first())
        parts = [f"{errors} answered with an error ({row['e5']} × 5xx, {errors - row['e5']} × 4xx)",
                 f"judged on at least {MIN_REQUESTS} requests"]
        if last:
            parts.append(f"the last: {last[0]} {last[1]}".rstrip())
        found[subject(model)] = Finding(
            f"model {model.name}: {rate:.1f} % of {n} requests failed in the last {duration(minutes)} "
            f"(above {rule.threshold:g} %)",
            "; ".join(parts), model.get_absolute_url(),
        )
    return found


def _model_latency(rule, now):
    found = {}
    for model, row, start, minutes in _judged(rule, now, "p95 latency", found):
        n = row["n"]
        # Nearest rank: the value 95 % of the window's requests are at or below.
        rank = math.ceil(0.95 * n) - 1
        ordered = _served([model.pk], start, now).order_by("latency_ms").values_list("latency_ms", flat=True)
        p95 = ordered[rank]
        if p95 <= _threshold(rule):
            continue
        found[subject(model)] = Finding(
            f"model {model.name}: p95 latency {p95:,.0f} ms over the last {duration(minutes)} "
            f"(above {rule.threshold:g} ms)",
            f"{n} requests (judged on at least {MIN_REQUESTS}); v{model.live.version.version} live since "
            f"{model.live.deployed_at:%Y-%m-%d %H:%M} UTC",
            model.get_absolute_url(),
        )
    return found


def worst_features(report: DriftReport) -> list[dict]:
    """The report's features with a PSI, highest first."""
    features = [f for f in report.features or [] if isinstance(f, dict) and f.get("psi") is not None]
    return sorted(features, key=lambda f: -float(f["psi"]))


def _model_drift(rule, now):
    fresh_after = now - 2 * datetime.timedelta(hours=settings.DRIFT_WINDOW_HOURS)
    found = {}
    for model in _live_models(rule):
        # A report without a PSI (too few sampled rows to compare) judges nothing: the one before stands.
        report = (DriftReport.objects.filter(version_id=model.live.version_id, computed_at__gt=fresh_after,
                                             computed_at__lte=now, max_psi__isnull=False)
                  .order_by("-computed_at").first())
        if report is None:
            continue
        ranked = worst_features(report)
        if ranked:
            worst, psi = str(ranked[0].get("name", "?")), float(ranked[0]["psi"])
        else:
            worst, psi = report.worst_feature or "?", report.max_psi
        if psi <= _threshold(rule):
            continue
        tests = []
        if ranked and ranked[0].get("ks") is not None:
            tests.append(f"KS {float(ranked[0]['ks']):.2f}")
        if ranked and ranked[0].get("p_value") is not None:
            tests.append(f"p {float(ranked[0]['p_value']):.2g}")
        others = [f"{f.get('name', '?')} {float(f['psi']):.2f}" for f in ranked[1:] if float(f["psi"]) > rule.threshold]
        detail = (f"{worst}: PSI {psi:.2f}{' (' + ', '.join(tests) + ')' if tests else ''}"
                  f"{'; also above: ' + ', '.join(others[:5]) if others else ''}; "
                  f"{report.rows:,} sampled rows of v{model.live.version.version} since "
                  f"{report.window_start:%Y-%m-%d %H:%M} UTC, computed {report.computed_at:%Y-%m-%d %H:%M} UTC")
        found[subject(model)] = Finding(
            f"model {model.name}: input drift on “{worst}”, PSI {psi:.2f} (above {rule.threshold:g})",
            detail, model.get_absolute_url(),
        )
    return found


def _model_silent(rule, now):
    start, minutes = _window(rule, now)
    models = [m for m in _live_models(rule) if m.live.deployed_at <= start]  # live at least that long
    if not models:
        return {}
    heard = set(_served([m.pk for m in models], start, now).values_list("model_id", flat=True).distinct())
    found = {}
    for model in models:
        if model.pk in heard:
            continue
        last = (Prediction.objects.filter(model_id=model.pk, role__in=SERVED, at__lte=now).order_by("-at")
                .values_list("at", flat=True).first())
        since = (f"the last request was at {last:%Y-%m-%d %H:%M} UTC" if last else
                 f"none since v{model.live.version.version} went live at {model.live.deployed_at:%Y-%m-%d %H:%M} UTC")
        found[subject(model)] = Finding(f"model {model.name}: no request for {duration(minutes)}", since,
                                        model.get_absolute_url())
    return found


CONDITIONS = {
    Condition.MODEL_ERRORS: _model_errors,
    Condition.MODEL_LATENCY: _model_latency,
    Condition.MODEL_DRIFT: _model_drift,
    Condition.MODEL_SILENT: _model_silent,
}


def describe(rule) -> str:
    """A model rule in a few words: "error rate of fraud above 5 % for 10 min"."""
    model = rule.model_name or "every live model"
    threshold = f"{rule.threshold:g}" if rule.threshold is not None else "?"
    minutes = duration(max(1, rule.minutes))
    return {
        Condition.MODEL_ERRORS: f"error rate of {model} above {threshold} % for {minutes}",
        Condition.MODEL_LATENCY: f"p95 latency of {model} above {threshold} ms for {minutes}",
        Condition.MODEL_DRIFT: f"input drift (PSI) of {model} above {threshold}",
        Condition.MODEL_SILENT: f"no request to {model} for {minutes}",
    }[rule.condition]
