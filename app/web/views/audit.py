"""The audit trail page: every operator action, newest first, filtered and paginated."""

import json

from django.core.paginator import Paginator
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from app.models import AuditEvent
from app.web.access import operator_required
from app.web.forms import AuditFilterForm

EVENTS_PER_PAGE = 50
# Detail keys that hold the id of another run; shown as links to it.
RUN_KEYS = {"retry_of", "rerun_of"}


def compact_json(value) -> str:
    """One line of JSON: shows the type of a value (5 and "5", true and "true" differ)."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def plain(value) -> str:
    """A top-level detail value for reading: strings as they are, lists of them joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ", ".join(value) if value else "none"
    return compact_json(value)


def diff_lines(diff: dict) -> list[dict]:
    """A parameter diff ({"added", "removed", "changed": {name: [old, new]}}) as lines."""
    lines = []
    for name, change in (diff.get("changed") or {}).items():
        if isinstance(change, (list, tuple)) and len(change) == 2:
            lines.append({"kind": "changed", "name": name, "old": compact_json(change[0]), "new": compact_json(change[1])})
        else:
            lines.append({"kind": "changed", "name": name, "new": compact_json(change)})
    for name, value in (diff.get("added") or {}).items():
        lines.append({"kind": "added", "name": name, "new": compact_json(value)})
    for name, value in (diff.get("removed") or {}).items():
        lines.append({"kind": "removed", "name": name, "old": compact_json(value)})
    return lines


def is_diff(value) -> bool:
    return isinstance(value, dict) and set(value) <= {"added", "removed", "changed"} and all(
        isinstance(part, dict) for part in value.values()
    )


def detail_items(details) -> list[dict]:
    """An event's details as items the template renders (and escapes): a parameter diff,
    a params list of name=value, a link to a run, or a labelled value."""
    if not isinstance(details, dict):
        return [{"label": "", "text": compact_json(details)}] if details not in (None, "") else []
    items = []
    for key, value in details.items():
        label = str(key).replace("_", " ")
        if key == "diff" and is_diff(value):
            items.append({"label": "changes", "diff": diff_lines(value)})
        elif key == "params" and isinstance(value, dict):
            items.append({"label": label, "pairs": [(name, compact_json(v)) for name, v in value.items()]})
        elif key in RUN_KEYS and isinstance(value, int) and not isinstance(value, bool):
            items.append({"label": label, "text": f"run #{value}", "url": reverse("run_detail", args=[value])})
        else:
            items.append({"label": label, "text": plain(value)})
    return items


@require_GET
@operator_required
def audit_list(request):
    form = AuditFilterForm(request.GET)
    # A bad value in one filter is reported and ignored; the valid ones still apply.
    form.is_valid()
    events = form.filter(AuditEvent.objects.all())
    page = Paginator(events, EVENTS_PER_PAGE).get_page(request.GET.get("page"))
    rows = [(event, detail_items(event.details)) for event in page]
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "rows": rows, "query": query.urlencode()}
    return render(request, "audit/list.html", context)
