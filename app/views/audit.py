from django.core.paginator import Paginator
from django.shortcuts import render
from django.views.decorators.http import require_GET

from app.access import operator_required
from app.forms import AuditFilterForm
from app.models import AuditEvent

EVENTS_PER_PAGE = 50


@require_GET
@operator_required
def audit_list(request):
    form = AuditFilterForm(request.GET)
    events = AuditEvent.objects.all()
    # A bad value in one filter is reported and ignored; the valid ones still apply.
    form.is_valid()
    events = form.filter(events)
    page = Paginator(events, EVENTS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "audit/list.html", {"form": form, "page": page, "query": query.urlencode()})
