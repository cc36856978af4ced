"""Health of a model's versions from the prediction log: requests, latency and errors.

The raw log (app.models.Prediction, a row per request) is rolled up by the monitoring job
(app.mlmodels.monitoring) into PredictionMinute rows, one per (version, role, minute) with
counts and a latency histogram over BOUNDS. The charts read the rollup, plus the raw log for
the minutes after the last rolled one, so a request made a second ago already shows. A page
is a handful of indexed queries whatever the size of the log: the rollup's rows of the span
(at most one per minute and series), and one grouped query over the raw tail.

Rows arrive late (each web process writes its buffer every PREDICTION_LOG_FLUSH_SECONDS and
keeps a batch while the database is down), so each rollup replaces the last REROLL_MINUTES
minutes again, in one transaction: a late row is counted once its minute is rolled again,
never twice. A row later than that is in the log but not in the charts.

Percentiles come from the histograms (39 log-spaced buckets from 0.1 ms to 60 s, each 42 %
wider than the one before, interpolated inside the bucket): within a bucket's width of the
exact value, and any span's percentile is the sum of its minutes' histograms.
"""

import datetime
import math

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, IntegerField, OuterRef, Q, Subquery, Sum, Value, When
from django.db.models.functions import TruncMinute
from django.utils import timezone

from app.models import (
    Deployment,
    DeploymentKind,
    Prediction,
    PredictionMinute,
    RegisteredModel,
    Role,
    Trial,
    TrialOutcome,
)

UTC = datetime.timezone.utc
MINUTE = datetime.timedelta(minutes=1)
REROLL_MINUTES = 15

# Latency bucket upper edges in ms: 39 log-spaced edges from 0.1 ms to 60 s, then +inf.
BOUNDS = [float(f"{0.1 * (600_000 ** (i / 38)):.3g}") for i in range(39)] + [math.inf]

# span → (length, width of a point on the charts)
SPANS = {
    "hour": (datetime.timedelta(hours=1), datetime.timedelta(minutes=1)),
    "day": (datetime.timedelta(days=1), datetime.timedelta(minutes=15)),
    "week": (datetime.timedelta(days=7), datetime.timedelta(hours=2)),
}
ROLE_ORDER = {Role.LIVE: 0, Role.CANARY: 1, Role.SHADOW: 2}
ANSWERED = (Role.LIVE, Role.CANARY)  # what clients got back (a shadow's answers are never returned)

DEPLOY_WORDS = {
    DeploymentKind.DEPLOY: "deployed",
    DeploymentKind.REDEPLOY: "redeployed",
    DeploymentKind.ROLLBACK: "rolled back to",
    DeploymentKind.PROMOTE: "auto-deployed",
    DeploymentKind.TRIAL: "promoted",
}


def _bin_expression():
    return Case(*[When(latency_ms__lte=edge, then=Value(i)) for i, edge in enumerate(BOUNDS[:-1])],
                default=Value(len(BOUNDS) - 1), output_field=IntegerField())


def _empty_entry():
    return {"requests": 0, "errors_4xx": 0, "errors_5xx": 0, "instances": 0, "bins": [0] * len(BOUNDS)}


def _aggregate(rows) -> dict:
    """{(model_id, version_id, role, minute): entry} of a Prediction queryset, computed in SQL:
    one query grouped by minute and latency bucket. Requests no version answered (nothing
    deployed) are left out, as in the rollup."""
    grouped = (
        rows.filter(version__isnull=False)
        .annotate(m=TruncMinute("at", tzinfo=UTC), b=_bin_expression())
        .values_list("model_id", "version_id", "role", "m", "b")
        .annotate(
            n=Count("id"),
            e4=Count("id", filter=Q(status__gte=400, status__lt=500)),
            e5=Count("id", filter=Q(status__gte=500)),
            inst=Sum("n_instances"),
        )
        .order_by()
    )
    out = {}
    for model_id, version_id, role, minute, b, n, e4, e5, inst in grouped:
        if timezone.is_naive(minute):
            minute = minute.replace(tzinfo=UTC)
        entry = out.get((model_id, version_id, role, minute))
        if entry is None:
            entry = out[(model_id, version_id, role, minute)] = _empty_entry()
        entry["requests"] += n
        entry["errors_4xx"] += e4
        entry["errors_5xx"] += e5
        entry["instances"] += inst or 0
        entry["bins"][b] += n
    return out


def _rolled_until(model_ids=None):
    """The last minute rolled up for these models (all when None): one query, a backward
    scan of the (model, minute) index per model. A plain MAX over the table would read all of it."""
    last = PredictionMinute.objects.filter(model_id=OuterRef("pk")).order_by("-minute").values("minute")[:1]
    models = RegisteredModel.objects.all() if model_ids is None else RegisteredModel.objects.filter(pk__in=model_ids)
    minutes = [m for m in models.annotate(last=Subquery(last)).values_list("last", flat=True).order_by() if m]
    return max(minutes, default=None)


def _floor(moment):
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def rollup(now=None) -> int:
    """Roll the closed minutes of the log into PredictionMinute: every minute since the last
    rolled one, and the REROLL_MINUTES before it again (for rows that came late). Returns how
    many minute rows were written."""
    now = now or timezone.now()
    end = _floor(now)
    oldest = end - datetime.timedelta(days=max(settings.PREDICTION_LOG_DAYS, 1))
    latest = _rolled_until()
    if latest is None:
        first = (Prediction.objects.filter(at__gte=oldest, at__lt=end).order_by("at")
                 .values_list("at", flat=True).first())
        if first is None:
            return 0
        start = _floor(first)
    else:
        start = min(_floor(latest) + MINUTE, end) - datetime.timedelta(minutes=REROLL_MINUTES)
    start = max(start, oldest)
    if start >= end:
        return 0
    rolled = _aggregate(Prediction.objects.filter(at__gte=start, at__lt=end))
    objs = [
        PredictionMinute(model_id=model_id, version_id=version_id, role=role, minute=minute,
                         requests=e["requests"], errors_4xx=e["errors_4xx"], errors_5xx=e["errors_5xx"],
                         instances=e["instances"], latency_bins=e["bins"])
        for (model_id, version_id, role, minute), e in rolled.items()
    ]
    with transaction.atomic():
        PredictionMinute.objects.filter(minute__gte=start, minute__lt=end).delete()
        PredictionMinute.objects.bulk_create(objs, batch_size=500)
    return len(objs)


def percentile(bins, q: float) -> float | None:
    """The q-quantile (0..1) of a latency histogram over BOUNDS, interpolated in its bucket."""
    total = sum(bins)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(bins):
        if count and seen + count >= rank:
            low = BOUNDS[i - 1] if i else 0.0
            high = BOUNDS[i]
            if math.isinf(high):
                return low
            return low + (high - low) * max(0.0, min(1.0, (rank - seen) / count))
        seen += count
    return BOUNDS[-2]


def _minutes(model_ids, start) -> dict:
    """{(model_id, version_id, role, minute): entry} since `start`: the rollup up to its last
    rolled minute, the raw log after it. Three queries."""
    rolled_until = _rolled_until(model_ids)
    out = {}
    if rolled_until is not None and rolled_until >= start:
        # Bounded by what was read above: a rollup running between these queries adds minutes
        # the raw tail below counts too.
        for row in PredictionMinute.objects.filter(
                model_id__in=model_ids, minute__gte=start, minute__lte=rolled_until).values_list(
                "model_id", "version_id", "role", "minute", "requests", "errors_4xx", "errors_5xx", "instances",
                "latency_bins").order_by():
            model_id, version_id, role, minute, n, e4, e5, inst, bins = row
            out[(model_id, version_id, role, minute)] = {
                "requests": n, "errors_4xx": e4, "errors_5xx": e5, "instances": inst,
                "bins": list(bins) + [0] * (len(BOUNDS) - len(bins))}
    tail_from = max(start, rolled_until + MINUTE) if rolled_until else start
    out.update(_aggregate(Prediction.objects.filter(model_id__in=model_ids, at__gte=tail_from)))
    return out


def summary(entries) -> dict:
    """Requests, errors and latency percentiles of minute entries taken together."""
    bins = [0] * len(BOUNDS)
    requests = e4 = e5 = 0
    for e in entries:
        requests += e["requests"]
        e4 += e["errors_4xx"]
        e5 += e["errors_5xx"]
        for i, c in enumerate(e["bins"]):
            if c:
                bins[i] += c
    return {
        "requests": requests,
        "errors_4xx": e4,
        "errors_5xx": e5,
        "errors": e4 + e5,
        "p50": percentile(bins, 0.5),
        "p95": percentile(bins, 0.95),
        "rate_4xx": 100.0 * e4 / requests if requests else None,
        "rate_5xx": 100.0 * e5 / requests if requests else None,
        "error_rate": 100.0 * (e4 + e5) / requests if requests else None,
    }


def _window(span, now):
    """(start, bucket starts) of a span: buckets on whole minutes, quarters or two hours (UTC),
    the last one open and ending now."""
    length, bucket = SPANS[span]
    epoch = datetime.datetime(2000, 1, 1, tzinfo=UTC)
    last = epoch + bucket * ((now - epoch) // bucket)
    count = int(length / bucket)
    buckets = [last - bucket * (count - 1 - i) for i in range(count)]
    return buckets[0], buckets


def _marks(model, start, now) -> list[dict]:
    """The deployments and trial starts and ends of the span, oldest first, as labelled times."""
    marks = [
        {"at": d.deployed_at, "label": f"{DEPLOY_WORDS.get(d.kind, d.kind)} v{d.version.version}"
         if d.kind == DeploymentKind.ROLLBACK else f"v{d.version.version} {DEPLOY_WORDS.get(d.kind, d.kind)}",
         "kind": "deploy"}
        for d in Deployment.objects.filter(model=model, deployed_at__gte=start, deployed_at__lte=now)
        .select_related("version").order_by()
    ]
    trials = Trial.objects.filter(model=model).filter(
        Q(started_at__gte=start, started_at__lte=now) | Q(ended_at__gte=start, ended_at__lte=now)
    ).select_related("version").order_by()
    for trial in trials:
        name = f"v{trial.version.version} {trial.mode}" + (f" {trial.percent} %" if trial.mode == "canary" else "")
        if start <= trial.started_at <= now:
            marks.append({"at": trial.started_at, "label": f"{name} started", "kind": "trial"})
        # A promotion is marked by its deployment already.
        if trial.ended_at and start <= trial.ended_at <= now and trial.outcome != TrialOutcome.PROMOTED:
            ended = "aborted" if trial.outcome == TrialOutcome.ABORTED else "ended"
            marks.append({"at": trial.ended_at, "label": f"{name} {ended}", "kind": "trial"})
    marks.sort(key=lambda m: m["at"])
    return marks


def page(model, span: str | None, now=None) -> dict:
    """What the model page's Health card shows over the last hour, day or week (`span`; any
    other value is the hour): per version and role, a point per bucket with requests per
    minute, p50 and p95 latency and the 4xx and 5xx rates; totals; the deployments and trial
    starts and ends of the span. About seven queries, whatever the size of the log."""
    span = span if span in SPANS else "hour"
    now = now or timezone.now()
    _length, bucket = SPANS[span]
    start, buckets = _window(span, now)
    minutes = _minutes([model.pk], start)
    version_numbers = dict(model.versions.values_list("pk", "version"))
    lines = {}
    for (_m, version_id, role, minute), e in minutes.items():
        index = int((minute - start) // bucket)
        if 0 <= index < len(buckets):
            lines.setdefault((version_id, role), [[] for _ in buckets])[index].append(e)

    live_id = model.live.version_id if model.live_id else None

    def order(item):  # the version live now first, then by role, newest first
        (version_id, role), _ = item
        return (version_id != live_id or role != Role.LIVE, ROLE_ORDER.get(role, 9),
                -(version_numbers.get(version_id) or 0))

    series = []
    for (version_id, role), per_bucket in sorted(lines.items(), key=order):
        active = [i for i, entries in enumerate(per_bucket) if entries]
        points = []
        for i, (moment, entries) in enumerate(zip(buckets, per_bucket)):
            point = summary(entries)
            closes = min(moment + bucket, now)
            point["at"] = moment + (closes - moment) / 2  # drawn in the middle of what it counts
            point["per_minute"] = point["requests"] / max((closes - moment) / MINUTE, 1.0)
            # A version's line runs from a point before its first request to one after its
            # last, not along the axis for the whole span.
            point["in_use"] = active[0] - 1 <= i <= active[-1] + 1
            points.append(point)
        number = version_numbers.get(version_id)
        series.append({"version": number, "role": role, "name": f"v{number} {role}", "points": points,
                       "live_now": role == Role.LIVE and version_id == live_id,
                       "totals": summary([e for entries in per_bucket for e in entries])})
    answered = [e for s_key, per_bucket in lines.items() if s_key[1] in ANSWERED for es in per_bucket for e in es]
    totals = summary(answered)
    totals["per_minute"] = totals["requests"] / max((now - start) / MINUTE, 1.0)
    totals["per_hour"] = totals["per_minute"] * 60
    return {
        "span": span,
        "spans": list(SPANS),
        "start": start,
        "end": now,
        "bucket": bucket,
        "series": series,
        "totals": totals,
        "shadowed": any(s["role"] == Role.SHADOW for s in series),
        "marks": _marks(model, start, now),
        "empty": not series,
        "ever": bool(series) or Prediction.objects.filter(model=model).exists(),
    }


def home_rows(now=None) -> list:
    """Each live model's last hour, as its clients saw it (the live version and a canary;
    not a shadow's answers): requests, p50 and p95, error rate and requests per 5 minutes
    for a sparkline. Four queries for all the models."""
    now = now or timezone.now()
    models = list(RegisteredModel.objects.filter(live__isnull=False).select_related("live__version", "trial__version")
                  .order_by("name"))
    if not models:
        return []
    start, buckets = _window("hour", now)
    minutes = _minutes([m.pk for m in models], start)
    per_model = {}
    for (model_id, _version_id, role, minute), e in minutes.items():
        if role in ANSWERED:
            per_model.setdefault(model_id, []).append((minute, e))
    rows = []
    for model in models:
        entries = per_model.get(model.pk, [])
        spark = [0] * 12
        for minute, e in entries:
            index = int((minute - start) / datetime.timedelta(minutes=5))
            if 0 <= index < 12:
                spark[index] += e["requests"]
        rows.append({"model": model, "version": model.live.version.version, "spark": spark, "start": start,
                     **summary([e for _minute, e in entries])})
    return rows
