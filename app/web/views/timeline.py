"""A run's timeline on a page of its own: its steps as bars on a time axis (app.web.timeline).
While the run is unfinished the page refreshes its live part, like the run page; the poll
answers 286 (htmx: stop polling) once the run has finished."""

from django.views.decorators.http import require_GET

from app.pipelines import dag_svg
from app.web.access import operator_required
from app.web.timeline import timeline
from app.web.views.runs import get_run_or_404, respond_live


@require_GET
@operator_required
def run_timeline(request, run_id):
    run = get_run_or_404(run_id)
    step_runs = run.step_runs.filter(map_of__isnull=True).only(
        "run_id", "step_name", "position", "status", "attempt", "started_at", "finished_at", "reused_from_id"
    )
    polling = not run.is_finished
    context = {
        "run": run,
        "timeline": timeline(run, step_runs),
        "polling": polling,
        # A large run's timeline is ~0.4 KB a step on every poll: poll it less often.
        "poll_every": "5s" if run.steps_total > dag_svg.LARGE_STEPS else "2s",
    }
    return respond_live(request, "runs/timeline.html", context, polling)
