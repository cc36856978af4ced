"""For machines, not people: the health check of load balancers, and Prometheus' metrics."""

from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from app.ops import health, metrics
from app.web.access import metrics_token, public


@public
@require_GET
def healthz(request):
    """200 when the database and the queue answer, else 503; which part fails, never why."""
    parts = health.checks()
    healthy = all(parts.values())
    body = {"status": "ok" if healthy else "unavailable", "checks": {name: "ok" if up else "failing" for name, up in parts.items()}}
    return JsonResponse(body, status=200 if healthy else 503)


@metrics_token
@require_GET
def metrics_view(request):
    return HttpResponse(metrics.exposition(), content_type=metrics.CONTENT_TYPE)
