"""Sessions and logins, beyond what Django and django-axes do on their own.

- `SessionPolicyMiddleware`: a session ends after SESSION_IDLE_MINUTES without a request from
  its user; a page that polls on its own (htmx `every …`, marked with the `X-Poll` header) is
  not its user being active. An htmx request that needs a login (the session ended while a
  page was polling) gets `HX-Redirect` to the login page, so the browser shows that page
  whole instead of pasting it into the part of the page it was refreshing. Every response
  whose headers do not say otherwise is `no-store`: pages show logs, parameters and tokens,
  and a shared machine's back button or cache must not show them to the next person.
- `on_locked_out` writes django-axes' lockouts to the audit trail.
"""

import time
from urllib.parse import urlencode, urlsplit

from axes.helpers import get_client_username, get_failure_limit
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import logout
from django.dispatch import receiver
from django.http import HttpResponse
from django.shortcuts import render, resolve_url
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from app.models import AuditAction, AuditEvent
from app.runs import audit

ACTIVE_AT = "active_at"
# How often a session's last activity is written (a write per click would be a database
# write per request).
ACTIVITY_RESOLUTION_SECONDS = 60


def is_poll(request) -> bool:
    return request.headers.get("X-Poll") == "1"


class SessionPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now = time.time()
            active_at = request.session.get(ACTIVE_AT)
            if active_at is not None and now - active_at > settings.SESSION_IDLE_MINUTES * 60:
                logout(request)  # an anonymous request from here on: the login check applies
            elif not is_poll(request) and (active_at is None or now - active_at >= ACTIVITY_RESOLUTION_SECONDS):
                request.session[ACTIVE_AT] = now
        response = self.get_response(request)
        if getattr(request, "htmx", False) and _is_login_redirect(response):
            response = _whole_page_login(request)
        if "Cache-Control" not in response:
            add_never_cache_headers(response)
        return response


def _is_login_redirect(response) -> bool:
    if response.status_code != 302:
        return False
    return urlsplit(response["Location"]).path == resolve_url(settings.LOGIN_URL)


def _whole_page_login(request) -> HttpResponse:
    """htmx follows a redirect and would swap the login form into the fragment it asked for:
    send the browser to the login page instead, back to the page it is on afterwards."""
    page = urlsplit(request.headers.get("HX-Current-URL", ""))
    back = (page.path or "/") + (f"?{page.query}" if page.query else "")
    response = HttpResponse(status=204)
    response["HX-Redirect"] = f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': back})}"
    return response


def lockout_response(request, original_response, credentials):
    """What a locked-out login gets (django-axes' AXES_LOCKOUT_CALLABLE): a page saying why
    and for how long, with status 429."""
    context = {
        "failure_limit": get_failure_limit(request, credentials),
        "username": get_client_username(request, credentials) or "",
        "minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
    }
    return render(request, "registration/locked_out.html", context, status=429)


@receiver(user_locked_out)
def on_locked_out(sender, request, username, ip_address, **kwargs):
    """One audit event per lockout: django-axes announces it again for every attempt made
    while it lasts (each one also restarts the lockout's time)."""
    username, address = username or "", ip_address or ""
    since = timezone.now() - settings.AXES_COOLOFF_TIME
    recent = AuditEvent.objects.filter(action=AuditAction.LOGIN_LOCKED, username=username, at__gte=since)
    if not any(event.details.get("address") == address for event in recent.only("details")):
        audit.record(None, AuditAction.LOGIN_LOCKED, username=username, details={"address": address})
