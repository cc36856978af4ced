"""Input drift: do the inputs a version sees now look like the data it was trained on?

The monitoring job (app.mlmodels.monitoring) calls `compute_all`. For each live version and
each version in a running shadow or canary trial that has a reference profile
(app.tracking.profiles, recorded by `ctx.register_model(..., reference=X_train)`), it reads
the sampled inputs of the last DRIFT_WINDOW_HOURS (Prediction rows with `sampled`, through
their partial index) and writes one DriftReport, per feature:
- the population stability index over the reference's own bins (its deciles; the outer bins
  open-ended): Σ (recent − reference) · ln(recent / reference), shares floored at 1e-4 so an
  empty bin is very rare rather than infinitely so. Usual reading: below 0.1 stable, 0.1 to
  0.25 moderate, above 0.25 drifted;
- the Kolmogorov–Smirnov statistic D, the largest gap between the recent inputs' distribution
  function and the reference's (approximated by its 100 stored quantiles, within 0.005), with
  the asymptotic two-sample p-value for the reference's real number of rows (scipy's
  `kstwo`, as `ks_2samp(method="asymp")` computes it). With thousands of rows even a harmless
  shift is "significant": the PSI gives the verdict, D and p say how sure;
- both histograms, so the page draws them without the profile.
The version's answers in the same rows are compared with its reference predictions the same
way (classes: PSI over the labels; numbers: PSI and KS). A version with fewer than
DRIFT_MIN_ROWS sampled instances gets a report that says so, with no scores.

A version's report is computed again once it is DRIFT_EVERY_MINUTES old, not every period:
a day of samples is up to PREDICTION_SAMPLES_PER_DAY × PREDICTION_SAMPLE_MAX_INSTANCES rows to
read, and one report a minute would be 1,440 a day. Reports older than DRIFT_REPORT_DAYS are
deleted at the end of each run. The page (`page`) only reads the latest report: nothing is
computed on request.
"""

import datetime
import logging
import math

import numpy as np
from django.conf import settings
from django.utils import timezone
from scipy import stats

from app.models import DriftReport, Prediction, ReferenceProfile, RegisteredModel
from app.tracking import profiles

log = logging.getLogger(__name__)

STABLE, DRIFTED = 0.1, 0.25  # PSI thresholds: below STABLE stable, above DRIFTED drifted
FLOOR = 1e-4
FILLS = {"drifted": "#c8321f", "moderate": "#c77700", "stable": "#2f5bd3", "": "#2f5bd3"}  # recent bars


def verdict(value) -> str:
    if value is None:
        return ""
    if value > DRIFTED:
        return "drifted"
    return "moderate" if value >= STABLE else "stable"


def psi(expected, actual) -> float:
    """The population stability index of `actual` shares against `expected` (same bins)."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, FLOOR), max(a, FLOOR)
        total += (a - e) * math.log(a / e)
    return total


def ks_test(quantiles, reference_rows: int, recent: np.ndarray) -> tuple[float, float]:
    """(D, p-value) of recent values against a reference given by its quantiles."""
    reference = np.sort(np.asarray(quantiles, dtype=float))
    recent = np.sort(recent)
    points = np.concatenate([reference, recent])
    gap = np.abs(np.searchsorted(reference, points, side="right") / len(reference)
                 - np.searchsorted(recent, points, side="right") / len(recent))
    d = float(gap.max())
    n = max(1, round(reference_rows * len(recent) / (reference_rows + len(recent))))
    return d, float(min(1.0, max(0.0, stats.kstwo.sf(d, n))))


def watched_versions() -> list[int]:
    """Ids of the versions drift is computed for: live, or in a running trial, with a
    reference profile."""
    ids = set(RegisteredModel.objects.filter(live__isnull=False).values_list("live__version_id", flat=True))
    ids |= set(RegisteredModel.objects.filter(trial__isnull=False, trial__ended_at__isnull=True)
               .values_list("trial__version_id", flat=True))
    return sorted(ReferenceProfile.objects.filter(version_id__in=ids).values_list("version_id", flat=True))


def compute_all(now=None) -> int:
    """Write a drift report for each watched version whose latest is DRIFT_EVERY_MINUTES
    old, then delete reports older than DRIFT_REPORT_DAYS; returns how many were written.
    A version that fails is logged and the others still get theirs; then DriftFailed names
    it, so the monitoring job is shown failing on the dashboard."""
    now = now or timezone.now()
    ids = watched_versions()
    fresh_after = now - datetime.timedelta(minutes=settings.DRIFT_EVERY_MINUTES)
    fresh = set(DriftReport.objects.filter(version_id__in=ids, computed_at__gt=fresh_after)
                .values_list("version_id", flat=True))
    written, failed = 0, []
    for profile in ReferenceProfile.objects.filter(version_id__in=set(ids) - fresh).select_related(
            "version__model").order_by("version_id"):
        try:
            compute(profile, now)
            written += 1
        except Exception as exc:  # noqa: BLE001 — one version's bad data must not stop the others
            log.exception("drift of version id %s could not be computed", profile.version_id)
            failed.append(f"{profile.version} ({type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''})")
    if settings.DRIFT_REPORT_DAYS:
        DriftReport.objects.filter(computed_at__lt=now - datetime.timedelta(days=settings.DRIFT_REPORT_DAYS)).delete()
    if failed:
        raise DriftFailed("no drift report for " + ", ".join(failed))
    return written


class DriftFailed(Exception):
    """Some versions got no drift report; the message names them and why."""


def recent_rows(profile: ReferenceProfile, start, now) -> tuple[np.ndarray, list]:
    """The sampled instances of the window as a matrix (instances of another width or with
    a value that is not a number are left out), and the answers given to them."""
    width = len(profile.features)
    instances, answers = [], []
    rows = (Prediction.objects.filter(version_id=profile.version_id, sampled=True, at__gte=start, at__lte=now)
            .values_list("inputs", "outputs"))
    for inputs, outputs in rows.iterator(chunk_size=200):
        if not isinstance(inputs, list):
            continue
        same = isinstance(outputs, list) and len(outputs) == len(inputs)
        for i, row in enumerate(inputs):
            if isinstance(row, list) and len(row) == width and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in row):
                instances.append(row)
                if same:
                    answers.append(outputs[i])
    matrix = np.asarray(instances, dtype=float).reshape(len(instances), width)
    return matrix[np.isfinite(matrix).all(axis=1)], answers


def compute(profile: ReferenceProfile, now) -> DriftReport:
    """One version's report for the window ending `now`."""
    start = now - datetime.timedelta(hours=settings.DRIFT_WINDOW_HOURS)
    matrix, answers = recent_rows(profile, start, now)
    report = DriftReport(version_id=profile.version_id, computed_at=now, window_start=start, rows=len(matrix),
                         features=[], predictions=None, max_psi=None, worst_feature="")
    if len(matrix) >= settings.DRIFT_MIN_ROWS:
        report.features = [compare(reference, matrix[:, j]) for j, reference in enumerate(profile.features)]
        worst = max(report.features, key=lambda f: f["psi"])
        report.max_psi, report.worst_feature = worst["psi"], worst["name"][:100]
        if profile.predictions and len(answers) >= settings.DRIFT_MIN_ROWS:
            report.predictions = compare_predictions(profile.predictions, answers)
    report.save()
    return report


def compare(reference: dict, values: np.ndarray) -> dict:
    """One feature's (or numeric answers') scores and both histograms."""
    recent = profiles.shares(reference["cuts"], values)
    d, p = ks_test(reference["quantiles"], reference["count"], values)
    return {
        "name": reference.get("name", ""), "psi": psi(reference["shares"], recent), "ks": d, "p_value": p,
        "cuts": reference["cuts"], "reference": reference["shares"], "recent": recent,
        "mean": float(values.mean()), "std": float(values.std()),
        "reference_mean": reference["mean"], "reference_std": reference["std"],
    }


def compare_predictions(reference: dict, answers: list) -> dict | None:
    if reference.get("kind") == "numeric":
        try:
            values = np.asarray(answers, dtype=float)
        except (TypeError, ValueError):
            return None
        values = values[np.isfinite(values)] if values.ndim == 1 else values[:0]
        if not len(values):
            return None
        return {"kind": "numeric", "rows": len(values), **compare(reference, values)}
    labels = [label for label, _share in reference["classes"]]
    counts = dict.fromkeys(labels, 0)
    for answer in answers:
        key = str(answer)
        counts[key] = counts.get(key, 0) + 1
    labels += sorted(set(counts) - set(labels))  # answers the reference never gave, last
    expected = dict(reference["classes"])
    ref = [expected.get(label, 0.0) for label in labels]
    recent = [counts[label] / len(answers) for label in labels]
    return {"kind": "classes", "rows": len(answers), "labels": labels, "reference": ref, "recent": recent,
            "psi": psi(ref, recent), "ks": None, "p_value": None}


# --- the model page ----------------------------------------------------------------------

CHART_W, CHART_H, CHART_TOP, CHART_BOTTOM = 180, 66, 4, 51
MAX_LABELLED = 6


def _num(value) -> str:
    return f"{value:.3g}" if abs(value) < 1e6 else f"{value:.2e}"


def bin_labels(cuts) -> list[str]:
    """Names of the bins made by `cuts`: ≤ a, a – b, …, > z."""
    if not cuts:
        return ["all"]
    labels = [f"≤ {_num(cuts[0])}"]
    labels += [f"{_num(a)} – {_num(b)}" for a, b in zip(cuts, cuts[1:])]
    labels.append(f"> {_num(cuts[-1])}")
    return labels


def histograms(labels, reference, recent, rows_ref, rows_recent, each_label=False) -> dict:
    """Bar geometry of the two histograms (one scale for both), for the template's SVG."""
    top = max(max(reference, default=0), max(recent, default=0)) or 1.0
    n = max(len(labels), 1)
    step = CHART_W / n
    gap = min(2.0, step * 0.15)

    def bars(shares, rows, who):
        out = []
        for i, (label, share) in enumerate(zip(labels, shares, strict=True)):
            h = (CHART_BOTTOM - CHART_TOP) * share / top
            out.append({"x": round(i * step + gap / 2, 2), "w": round(step - gap, 2),
                        "y": round(CHART_BOTTOM - h, 2), "h": round(h, 2),
                        "title": f"{label}: {share * 100:.1f} % of {who} ({round(share * rows)} rows)"})
        return out

    ticks = []
    if each_label and n <= MAX_LABELLED:  # a few classes: each bar named under it
        ticks = [{"x": round((i + 0.5) * step, 2), "text": label if len(label) <= 10 else label[:9] + "…"}
                 for i, label in enumerate(labels)]
    return {
        "reference": bars(reference, rows_ref, "training rows"), "recent": bars(recent, rows_recent, "recent rows"),
        "first": labels[0], "last": labels[-1], "ticks": ticks, "width": CHART_W, "height": CHART_H,
        "base": CHART_BOTTOM,
    }


def _feature_row(f, index, reference_rows, rows) -> dict:
    labels = bin_labels(f["cuts"])
    return {
        "index": index, "name": f["name"], "psi": f["psi"], "ks": f["ks"], "p_value": f["p_value"],
        "verdict": verdict(f["psi"]), "fill": FILLS[verdict(f["psi"])],
        "mean": f["mean"], "reference_mean": f["reference_mean"],
        "shift_sd": (f["mean"] - f["reference_mean"]) / f["reference_std"] if f["reference_std"] else None,
        "chart": histograms(labels, f["reference"], f["recent"], reference_rows, rows),
    }


def summary(version, role: str) -> dict:
    """What the page shows of one version: its latest report, rows sorted worst first."""
    profile = ReferenceProfile.objects.filter(version=version).only("version_id", "rows", "created_at").first()
    report = DriftReport.objects.filter(version=version).order_by("-computed_at").first() if profile else None
    out = {"version": version, "role": role, "profile": profile, "report": report, "features": [],
           "predictions": None}
    if report is None or report.max_psi is None:
        return out
    rows = [_feature_row(f, i, profile.rows, report.rows) for i, f in enumerate(report.features)]
    rows.sort(key=lambda r: (-r["psi"], r["index"]))
    out["features"] = rows
    out["drifted"] = sum(1 for r in rows if r["verdict"] == "drifted")
    p = report.predictions
    if p:
        labels = p["labels"] if p["kind"] == "classes" else bin_labels(p["cuts"])
        out["predictions"] = {
            "kind": p["kind"], "psi": p["psi"], "ks": p["ks"], "p_value": p["p_value"], "verdict": verdict(p["psi"]),
            "fill": FILLS[verdict(p["psi"])],
            "chart": histograms(labels, p["reference"], p["recent"], profile.rows, p["rows"],
                                each_label=p["kind"] == "classes"),
        }
    return out


def page(model) -> dict | None:
    """What templates/models/_drift.html shows: the live version's latest report and a line
    for a version on trial; None when nothing is live."""
    if model.live_id is None:
        return None
    live = model.live.version
    trial = model.trial if model.trial_id else None
    return {
        "live": summary(live, "live"),
        "trial": summary(trial.version, trial.mode) if trial and trial.ended_at is None else None,
        "window_hours": settings.DRIFT_WINDOW_HOURS,
        "min_rows": settings.DRIFT_MIN_ROWS,
        "every_minutes": settings.DRIFT_EVERY_MINUTES,
        "stable": STABLE,
        "drifted": DRIFTED,
    }
