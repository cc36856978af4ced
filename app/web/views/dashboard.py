"""The operator home: is anything broken?"""

import datetime
import logging

from django.db.models import Count
from django.db.models.functions import TruncDate
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from app.models import UNFINISHED, Incident, Lease, PipelineState, Run, Status, WorkerHeartbeat
from app.pipelines.registry import DEFAULT_QUEUE, registry
from app.runs import queues
from app.runs.worker import dead_after
from app.web import charts, health_card
from app.web.access import operator_required
from app.web.views.pipelines import latest_runs
from app.web.views.results import line_of_run

log = logging.getLogger(__name__)

# What each periodic job of the workers (app.runs.worker) is, for an operator.
JOB_LABELS = {
    "watchdog": "Finding steps whose worker died or whose task was lost",
    "scheduler": "Starting the schedules' runs",
    "backfills": "Starting the backfills' runs",
    "alerts": "Checking the alert rules",
    "alert-delivery": "Sending alerts",
    "prune": "The daily prune",
    "monitoring": "Monitoring the live models (health, drift, shadow periods)",
}


def queue_depth(names) -> int | None:
    """Tasks waiting on the queues `names`; None when the queue does not answer."""
    try:
        return sum(queues.huey_for(name).pending_count() for name in names)
    except Exception as exc:  # noqa: BLE001 — whatever the queue's storage raises
        log.warning("home: the task queue does not answer (%s)", exc)
        return None


def runs_per_day(now, days=30):
    """(the days, {line: runs per day}) for the last `days` days, a line per model the runs
    registered, else per pipeline (results.line_of_run): one grouped query."""
    since = (now - datetime.timedelta(days=days - 1)).date()
    rows = (
        Run.objects.filter(created_at__date__gte=since)
        .annotate(day=TruncDate("created_at"), line=line_of_run())
        .values_list("day", "line")
        .annotate(n=Count("id"))
        .order_by()
    )
    lines = {}
    for day, line, n in rows:
        lines.setdefault(line, {})[day] = n
    every_day = [since + datetime.timedelta(days=i) for i in range(days)]
    return every_day, {name: [lines[name].get(day, 0) for day in every_day] for name in sorted(lines)}


def runs_chart(days, lines) -> str:
    def title(day, name, n):
        return f"{charts.day_label(day)} · {name}: {n} run{'' if n == 1 else 's'}"

    series = [
        charts.Series(name, [charts.Point(day, n, title(day, name, n)) for day, n in zip(days, counts)])
        for name, counts in lines.items()
    ]
    return charts.line_chart(series, f"Runs per day, last {len(days)} days", integer=True, from_zero=True,
                             empty="no runs in these days")


def success_rate(now, days=7):
    """Share of the runs finished in the last `days` days that succeeded (cancelled ones left
    out: an operator chose to stop them), and how many finished."""
    finished = Run.objects.filter(
        finished_at__gte=now - datetime.timedelta(days=days), status__in=[Status.SUCCEEDED, Status.FAILED]
    ).order_by()
    by_status = dict(finished.values_list("status").annotate(n=Count("id")))
    total = sum(by_status.values())
    return (round(100 * by_status.get(Status.SUCCEEDED, 0) / total) if total else None), total


@require_GET
@operator_required
def dashboard(request):
    now = timezone.now()
    latest = latest_runs(list(registry.pipelines()))
    current = {name: pipe.snapshot()["source_hash"] for name, pipe in registry.pipelines().items()}
    workers = [
        {
            "name": w.name, "ago": int((now - w.last_seen).total_seconds()), "alive": now - w.last_seen < dead_after(),
            "queue": w.queue, "threads": w.threads, "stopping": w.stopping, "pipelines": len(w.code),
            # Pipelines whose code this worker loaded differs from what the site has loaded.
            "other_code": sorted(n for n, h in w.code.items() if n in current and current[n] != h),
        }
        for w in WorkerHeartbeat.objects.all()[:20]
    ]
    rate, finished = success_rate(now)
    days, lines = runs_per_day(now)
    context = {
        "failing": [run for run in latest if run.status == Status.FAILED],
        "in_progress": Run.objects.filter(status__in=UNFINISHED).select_related("triggered_by")[:20],
        "in_progress_count": Run.objects.filter(status__in=UNFINISHED).count(),
        "queue_depth": queue_depth({DEFAULT_QUEUE, *(w["queue"] for w in workers)}),
        "incidents": Incident.objects.filter(closed_at__isnull=True).select_related("rule", "acknowledged_by")[:10],
        "paused": PipelineState.objects.filter(paused=True).select_related("changed_by").order_by("pipeline_name"),
        "failing_jobs": [
            {"label": JOB_LABELS.get(lease.name, lease.name), "lease": lease}
            for lease in Lease.objects.exclude(problem="").order_by("name")
        ],
        "workers": workers,
        "any_worker_alive": any(w["alive"] for w in workers),
        "workers_alive": sum(1 for w in workers if w["alive"]),
        "stale_workers": sum(1 for w in workers if w["alive"] and w["other_code"]),
        "dead_after": int(dead_after().total_seconds()),
        "success_rate": rate,
        "finished_7d": finished,
        "chart": runs_chart(days, lines),
        "live_models": health_card.home(now),
        "runs_30d": sum(sum(counts) for counts in lines.values()),
        "problems": registry.problems(),
        "import_errors": list(registry.import_errors.values()),
    }
    template = "home/dashboard.html#live" if request.htmx else "home/dashboard.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response
