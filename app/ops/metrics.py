"""Prometheus metrics, read from the database at each scrape (`/metrics`).

Computed from the records, not counted in memory: every web process (gunicorn runs several,
on several machines) answers the same, nothing is lost when one restarts, and no
multi-process bookkeeping is needed. A scrape costs a handful of aggregate queries; the
step-duration histogram is one pass over the finished step runs.
"""

import datetime

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from app.models import Run, Status, StepAttempt, StepRun, WorkerHeartbeat
from app.pipelines.registry import DEFAULT_QUEUE
from app.runs import queues, watchdog
from app.runs.worker import dead_after

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)


def exposition() -> bytes:
    """The metrics in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry)


class _Collector:
    def collect(self):
        yield from _runs()
        yield from _steps()
        yield _durations()
        yield from _workers()
        yield _queue_depth()


def _runs():
    runs = GaugeMetricFamily("mlops_runs", "Runs by pipeline and status (all kept runs).", labels=["pipeline", "status"])
    for row in Run.objects.values("pipeline_name", "status").annotate(n=Count("id")).order_by():
        runs.add_metric([row["pipeline_name"], row["status"]], row["n"])
    yield runs


def _steps():
    steps = GaugeMetricFamily("mlops_step_runs", "Step runs by status (all kept runs).", labels=["status"])
    for row in StepRun.objects.values("status").annotate(n=Count("id")).order_by():
        steps.add_metric([row["status"]], row["n"])
    yield steps
    rescued = CounterMetricFamily(
        "mlops_steps_rescued", "Attempts the watchdog took back from a worker that stopped responding."
    )
    rescued.add_metric([], StepAttempt.objects.filter(error__contains=watchdog.RESCUED).count())
    yield rescued


def _durations():
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    finished = StepRun.objects.filter(
        status__in=[Status.SUCCEEDED, Status.FAILED], started_at__isnull=False, finished_at__isnull=False,
        reused_from__isnull=True,  # a reused output was not run again
    ).annotate(duration=duration)
    buckets = {
        f"le_{i}": Count("id", filter=Q(duration__lte=datetime.timedelta(seconds=bound)))
        for i, bound in enumerate(DURATION_BUCKETS)
    }
    totals = finished.aggregate(count=Count("id"), total=Sum("duration"), **buckets)
    histogram = HistogramMetricFamily(
        "mlops_step_duration_seconds", "How long finished step runs took, last attempt (all kept runs).",
    )
    cumulative = [(str(float(bound)), totals[f"le_{i}"]) for i, bound in enumerate(DURATION_BUCKETS)]
    cumulative.append(("+Inf", totals["count"]))
    total = totals["total"] or datetime.timedelta(0)
    histogram.add_metric([], cumulative, sum_value=total.total_seconds())
    return histogram


def _workers():
    cutoff = timezone.now() - dead_after()
    workers = GaugeMetricFamily("mlops_workers", "Worker processes known, by queue and state.", labels=["queue", "state"])
    counts = {}
    for worker in WorkerHeartbeat.objects.only("queue", "last_seen", "stopping"):
        state = "dead" if worker.last_seen < cutoff else "stopping" if worker.stopping else "live"
        counts[worker.queue, state] = counts.get((worker.queue, state), 0) + 1
    for (queue, state), n in sorted(counts.items()):
        workers.add_metric([queue, state], n)
    yield workers


def _queue_depth():
    depth = GaugeMetricFamily("mlops_queue_depth", "Tasks waiting in each queue.", labels=["queue"])
    known = {DEFAULT_QUEUE}
    known.update(WorkerHeartbeat.objects.values_list("queue", flat=True).distinct())
    known.update(StepRun.objects.filter(status=Status.QUEUED).values_list("queue", flat=True).distinct())
    for queue in sorted(known):
        depth.add_metric([queue], queues.huey_for(queue).pending_count())
    return depth
