"""True labels sent back for predictions, and how the live versions fare against them.

A client that asked for predictions learns the truth later (the loan was repaid, the part
failed) and sends it with the prediction's `id` to `POST /api/models/<name>/feedback`. The
labels are compared with the answer kept in the prediction log (`Prediction.outputs`) once,
when they arrive, and the outcome is stored on the Feedback row, so the model page sums
counts instead of comparing lists:
- an answer of classes (strings, whole numbers, booleans) is compared for equality and
  counts the `correct` instances (live accuracy);
- an answer of floats counts the absolute error (live mean absolute error).

Two limits come from the prediction log (app.mlmodels.predlog), and both are answered
plainly rather than guessed around:
- The log is written off the request path: a prediction is in the database up to
  PREDICTION_LOG_FLUSH_SECONDS after its answer. When its id is not found, this process
  writes its own buffer at once and looks again; a prediction still in another web
  process's buffer cannot be told from an unknown id, so the answer is a 404 that says so,
  with Retry-After.
- The answer is kept only for requests of at most PREDICTION_SAMPLE_MAX_INSTANCES
  instances (a sampled larger request keeps that many first ones): a larger answer cannot
  be compared (409), a sampled one is compared on the instances it kept.

Feedback is taken once per prediction (a second one is refused, naming when the first
came) and belongs to the prediction: the log's retention (PREDICTION_LOG_DAYS) removes both.
"""

import datetime
import json
import math
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from app.mlmodels import predlog
from app.models import Feedback, ModelVersion, Prediction, PredictionMinute, RegisteredModel, Role

WINDOW = datetime.timedelta(days=30)  # what the model page shows
HOURLY_UNDER = datetime.timedelta(days=2)  # labelled predictions younger than this: hourly points
# Offline metrics that measure what live feedback measures, so they can share the chart.
COMPARABLE = {"classes": {"accuracy", "acc", "test_accuracy", "val_accuracy"},
              "numbers": {"mae", "mean_absolute_error", "test_mae", "val_mae"}}


class FeedbackRefused(Exception):
    """Feedback that cannot be taken; `status` and the message say why (`retry_after`:
    seconds after which the same request may succeed)."""

    def __init__(self, message: str, status: int = 400, retry_after: int | None = None):
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)


@dataclass(frozen=True)
class Comparison:
    kind: str  # "classes" or "numbers"
    compared: int
    correct: int | None
    abs_error_sum: float | None


def record(name: str, payload) -> dict:
    """Take the true labels of one prediction of model `name` (the parsed request body);
    returns what the API answers, or raises FeedbackRefused naming what is wrong."""
    model = RegisteredModel.objects.filter(name=name).first()
    if model is None:
        raise FeedbackRefused(f"there is no model named {name!r}", 404)
    uid, labels = read_body(payload)
    prediction = find(uid)
    if prediction.model_id != model.pk:
        other = prediction.model.name
        raise FeedbackRefused(f"prediction {uid} was answered by model {other!r}, not {name!r}; "
                              f"send its feedback to /api/models/{other}/feedback")
    earlier = Feedback.objects.filter(prediction=prediction).values_list("at", flat=True).first()
    if earlier is not None:
        raise already_sent(uid, earlier)
    if prediction.status != 200:
        raise FeedbackRefused(f"prediction {uid} failed ({prediction.status}: {prediction.error or 'no answer'}), "
                              "so it has no answer to compare", 409)
    if isinstance(labels, _Single) and prediction.n_instances != 1:
        raise FeedbackRefused(f'prediction {uid} had {prediction.n_instances} instances: '
                              'send "labels", one per instance, rather than one "label"')
    if len(labels) != prediction.n_instances:
        raise FeedbackRefused(f'"labels" has {len(labels)} label{"" if len(labels) == 1 else "s"}; prediction {uid} '
                              f"had {prediction.n_instances} instance{'' if prediction.n_instances == 1 else 's'}, "
                              "so send one label per instance, in the order of the instances")
    if prediction.outputs is None:
        raise FeedbackRefused(
            f"the answer to prediction {uid} was not kept, so it cannot be compared: answers are kept for requests of "
            f"at most {settings.PREDICTION_SAMPLE_MAX_INSTANCES} instances and it had {prediction.n_instances}", 409)
    version = f"v{prediction.version.version}" if prediction.version_id else "the live version"
    result = compare(prediction.outputs, labels, version)
    try:
        with transaction.atomic():
            feedback = Feedback.objects.create(
                prediction=prediction, model=model, version_id=prediction.version_id, at=timezone.now(),
                labels=list(labels), n=result.compared, correct=result.correct, abs_error_sum=result.abs_error_sum,
            )
    except IntegrityError:  # the same feedback, sent twice at once: the other request won
        earlier = Feedback.objects.filter(prediction=prediction).values_list("at", flat=True).first()
        if earlier is None:
            raise
        raise already_sent(uid, earlier) from None
    return {
        "prediction_id": str(uid), "model": name,
        "version": prediction.version.version if prediction.version_id else None,
        "labels": len(labels), "compared": result.compared, "correct": result.correct,
        "mean_absolute_error": (result.abs_error_sum / result.compared
                                if result.abs_error_sum is not None and result.compared else None),
        "at": feedback.at.isoformat(),
    }


class _Single(list):
    """The labels of a body that sent one "label": fine for a one-instance prediction."""


def read_body(payload) -> tuple[uuid.UUID, list]:
    """The prediction id and the labels of a feedback body (a _Single list when it sent one
    "label"); FeedbackRefused naming what is wrong."""
    if not isinstance(payload, dict):
        raise FeedbackRefused('the body must be a JSON object: {"prediction_id": "<the id of the prediction answer>", '
                              '"labels": [one true label per instance]}')
    raw = payload.get("prediction_id")
    if raw is None:
        raise FeedbackRefused('"prediction_id" is missing: send the "id" of the prediction answer')
    try:
        uid = uuid.UUID(raw) if isinstance(raw, str) else None
    except ValueError:
        uid = None
    if uid is None:
        raise FeedbackRefused(f'"prediction_id" must be the "id" of a prediction answer (a UUID), not {_show(raw)}')
    if "labels" in payload and "label" in payload:
        raise FeedbackRefused('send either "labels" (one per instance) or "label" (a one-instance prediction), '
                              "not both")
    if "label" in payload:
        labels, single = [payload["label"]], True
    elif "labels" in payload:
        labels, single = payload["labels"], False
        if not isinstance(labels, list) or not labels:
            raise FeedbackRefused('"labels" must be a non-empty list, one true label per instance, '
                                  f"not {_show(labels)}")
    else:
        raise FeedbackRefused('"labels" is missing: send one true label per instance of the prediction')
    for i, label in enumerate(labels):
        where = '"label"' if single else f"label {i}"
        if isinstance(label, float) and not math.isfinite(label):
            raise FeedbackRefused(f"{where}: {label!r} is not a finite number")
        if not isinstance(label, (str, int, float)):  # bool is an int
            raise FeedbackRefused(f"{where}: {_show(label)} is neither a number nor a string")
    return uid, (_Single(labels) if single else list(labels))


def find(uid: uuid.UUID) -> Prediction:
    """The logged prediction the client was answered with (shadow rows never are), writing
    this process's buffer of the log first if it is not in the database yet."""
    rows = Prediction.objects.select_related("model", "version").exclude(role=Role.SHADOW)
    prediction = rows.filter(uid=uid).first()
    if prediction is None and predlog.prediction_log.buffer:
        predlog.prediction_log.flush()  # it may be this process's, waiting for the writer thread
        prediction = rows.filter(uid=uid).first()
    if prediction is None:
        wait = math.ceil(settings.PREDICTION_LOG_FLUSH_SECONDS) + 1
        days = settings.PREDICTION_LOG_DAYS
        kept = f", or the prediction is older than the log keeps ({days} days)" if days else ""
        raise FeedbackRefused(
            f"there is no prediction with the id {uid}: predictions are logged within "
            f"{settings.PREDICTION_LOG_FLUSH_SECONDS:g} s of their answer, so if it was made just now, retry in a few "
            f"seconds; otherwise the id is wrong{kept}", 404, retry_after=wait)
    return prediction


def already_sent(uid, at) -> FeedbackRefused:
    return FeedbackRefused(f"feedback for prediction {uid} was already sent, at {at:%Y-%m-%d %H:%M:%S} UTC; "
                           "it is taken once per prediction, and the first one is kept", 409)


def compare(outputs: list, labels: list, version: str) -> Comparison:
    """Labels against the kept answer (its first len(outputs) instances): classes by
    equality, floats by absolute error. FeedbackRefused if they cannot be compared."""
    if any(isinstance(o, (list, dict)) for o in outputs):
        raise FeedbackRefused(f"{version} answers with lists, not one value per instance, "
                              "so there is no single label to compare with", 409)
    pairs = list(zip(outputs, labels))
    if any(isinstance(o, float) for o in outputs):
        for i, (_o, label) in enumerate(pairs):
            if isinstance(label, (str, bool)):
                raise FeedbackRefused(f"label {i}: {_show(label)} is not a number; {version} predicts numbers")
        error = sum(abs(float(o) - float(label)) for o, label in pairs if o is not None)
        return Comparison("numbers", len(pairs), None, error)
    kinds = {type(o) for o in outputs if o is not None}
    for i, (_o, label) in enumerate(pairs):
        if isinstance(label, float) and label.is_integer() and int in kinds:
            labels[i] = label = int(label)  # 1.0 from a client that writes every number as a float
        if kinds and type(label) not in kinds:
            names = " or ".join(sorted(_TYPE_NAMES[k] for k in kinds))
            raise FeedbackRefused(f"label {i}: {_show(label)} is {_TYPE_NAME.get(type(label), 'another type')}; "
                                  f"{version} predicts classes that are {names}")
    return Comparison("classes", len(pairs), sum(1 for o, label in pairs if o == label), None)


_TYPE_NAMES = {str: "strings", int: "whole numbers", bool: "booleans"}
_TYPE_NAME = {str: "a string", int: "a whole number", bool: "a boolean", float: "a fraction"}


def _show(value) -> str:
    """A value of the body as JSON writes it, cut short."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:40] + "…"


# --- the model page --------------------------------------------------------------------------


def page(model, now=None) -> dict | None:
    """What templates/models/_feedback.html shows: per version over the last WINDOW, the
    labelled predictions, their share of the answered ones, live accuracy (or mean absolute
    error) next to the offline headline metric, and the points of the chart over time.
    None hides the card: the model was never deployed and has no feedback."""
    now = now or timezone.now()
    start = now - WINDOW
    labelled = Feedback.objects.filter(model=model, at__gte=start, prediction__at__gte=start)
    totals = {row["version_id"]: row for row in labelled.values("version_id").annotate(
        requests=Count("id"), instances=Sum("n"), right=Sum("correct"), error=Sum("abs_error_sum"),
        classes=Count("id", filter=Q(correct__isnull=False))).order_by()}
    if not totals and model.live_id is None and not Prediction.objects.filter(model=model).exists():
        return None
    card = {"window_days": WINDOW.days, "example": _example_labels(model),
            "max_instances": settings.PREDICTION_SAMPLE_MAX_INSTANCES, "versions": [], "series": []}
    if not totals:
        return card
    earliest = labelled.order_by("prediction__at").values_list("prediction__at", flat=True).first()
    hourly = now - earliest < HOURLY_UNDER
    buckets = (labelled.annotate(bucket=(TruncHour if hourly else TruncDay)("prediction__at"))
               .values("version_id", "bucket")
               .annotate(instances=Sum("n"), right=Sum("correct"), error=Sum("abs_error_sum")).order_by("bucket"))
    answered = _answered(model, start)
    versions = {v.pk: v for v in ModelVersion.objects.filter(pk__in=[k for k in totals if k is not None])}
    live_id = model.live.version_id if model.live_id else None
    newest_first = sorted(totals.items(), key=lambda kv: -(versions[kv[0]].version if kv[0] in versions else 0))
    rows = [_row(model, versions.get(version_id), t, answered.get(version_id, 0), live_id)
            for version_id, t in newest_first]
    classes = sum(t["classes"] for t in totals.values())
    kind = "classes" if classes * 2 >= sum(t["requests"] for t in totals.values()) else "numbers"
    series = _series(buckets, versions, kind, rows, hourly)
    return {
        **card, "versions": rows, "kind": kind, "hourly": hourly, "series": series,
        "headline": next((r for r in rows if r["is_live"]), rows[0]),
        "offline_drawn": any(line["offline"] for line in series),
        "requests": sum(r["requests"] for r in rows), "instances": sum(r["instances"] for r in rows),
        "answered": sum(answered.values()),
    }


def _row(model, version, t, answered, live_id) -> dict:
    """One version's line of the card from its sums `t`: mostly classes → accuracy, else MAE."""
    kind = "classes" if t["classes"] * 2 >= t["requests"] else "numbers"
    n = t["instances"] or 0
    offline = version.metrics.get(model.headline_metric) if version and model.headline_metric else None
    row = {
        "version": version, "kind": kind, "is_live": version is not None and version.pk == live_id,
        "requests": t["requests"], "instances": n, "answered": answered,
        "share": 100.0 * t["requests"] / answered if answered else None,
        "accuracy": 100.0 * (t["right"] or 0) / n if kind == "classes" and n else None,
        "mae": (t["error"] or 0) / n if kind == "numbers" and n else None,
        "offline_name": model.headline_metric if offline is not None else "",
        "offline": offline,
        "comparable": offline is not None and model.headline_metric.lower() in COMPARABLE[kind],
    }
    row["live_text"] = (f"{row['accuracy']:.1f} %" if kind == "classes" else f"{row['mae']:.4g}") if n else "—"
    row["offline_text"] = _offline_text(row)
    return row


def _example_labels(model) -> str:
    """The labels of the curl example on the page, as JSON: one label of the kind the model
    answers (the first of its latest kept answer), so the example shows the type to send."""
    outputs = (Prediction.objects.filter(model=model, status=200, outputs__isnull=False).exclude(role=Role.SHADOW)
               .order_by("-at").values_list("outputs", flat=True).first())
    if outputs and not isinstance(outputs[0], (list, dict)):
        return json.dumps(outputs[:1])
    return "[1]"


def _offline_text(row) -> str:
    """The offline metric as the live one is written: accuracy as a percentage."""
    value = row["offline"]
    if value is None:
        return ""
    if row["comparable"] and row["kind"] == "classes" and 0 <= value <= 1:
        return f"{value * 100:.1f} %"
    return f"{value:.4g}"


def _series(buckets, versions, kind, rows, hourly) -> list[dict]:
    """Per version: its live points [(time, value, what pointing at it says)], and its
    offline metric as a flat line over the same span when it measures the same thing."""
    lines = {}
    for b in buckets:
        version = versions.get(b["version_id"])
        if version is None or not b["instances"]:
            continue
        if kind == "classes" and b["right"] is not None:
            value = 100.0 * b["right"] / b["instances"]
            text = f"{value:.1f} % correct"
        elif kind == "numbers" and b["error"] is not None:
            value = b["error"] / b["instances"]
            text = f"mean absolute error {value:.4g}"
        else:
            continue
        moment = b["bucket"]
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment, datetime.timezone.utc)
        local = timezone.localtime(moment)
        when = f"{local:%b} {local.day}" + (f" {local:%H}:00" if hourly else "")
        lines.setdefault(version.pk, []).append(
            (moment, value, f"v{version.version} · predictions of {when}: {text} "
                            f"({b['instances']} labelled instances)"))
    series = []
    by_id = {r["version"].pk: r for r in rows if r["version"] is not None}
    for slot, (version_id, points) in enumerate(sorted(lines.items(), key=lambda kv: versions[kv[0]].version)):
        version = versions[version_id]
        series.append({"name": f"v{version.version} live", "points": points, "slot": slot, "offline": False})
        row = by_id.get(version_id)
        if row and row["comparable"]:
            value = row["offline"] * 100 if kind == "classes" and row["offline"] <= 1 else row["offline"]
            shown = f"{value:.1f} %" if kind == "classes" else f"{value:.4g}"
            text = f"v{version.version} · offline {row['offline_name']} at training: {shown}"
            ends = [points[0][0], points[-1][0]]
            series.append({"name": f"v{version.version} offline ({row['offline_name']})",
                           "points": [(moment, value, text) for moment in dict.fromkeys(ends)],
                           "slot": slot, "offline": True})
    return series


def _answered(model, start) -> dict:
    """{version_id: predictions answered (live or canary, status 200) since `start`}: the
    health rollup, plus the raw log for the minutes it has not rolled yet."""
    rolled_until = PredictionMinute.objects.filter(model=model).aggregate(m=Max("minute"))["m"]
    counts = {}
    rolled = (PredictionMinute.objects.filter(model=model, minute__gte=start).exclude(role=Role.SHADOW)
              .values("version_id").annotate(r=Sum("requests"), e4=Sum("errors_4xx"), e5=Sum("errors_5xx")).order_by())
    for row in rolled:
        counts[row["version_id"]] = row["r"] - row["e4"] - row["e5"]
    tail_from = max(start, rolled_until + datetime.timedelta(minutes=1)) if rolled_until else start
    raw = (Prediction.objects.filter(model=model, at__gte=tail_from, status=200).exclude(role=Role.SHADOW)
           .values("version_id").annotate(c=Count("id")).order_by())
    for row in raw:
        counts[row["version_id"]] = counts.get(row["version_id"], 0) + row["c"]
    return counts
