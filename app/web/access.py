"""Who may do what. Every view declares its policy with one of these decorators.

- `login_required` is global (LoginRequiredMiddleware); `public` marks the few exceptions.
- `any_role`: every signed-in user (operators, stakeholders, admins).
- `operator_required`: users with the `app.operate` permission (the `operators` group) and
  superusers; everyone else gets 403.
- `token`: the JSON API (app.api declares it on its views). No session and no CSRF token
  (nothing a browser sends on its own authenticates it); an API token with the scope the
  endpoint needs, in `Authorization: Bearer …`, else 401 (or 403 for a missing scope).
"""

import functools
import hmac

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

OPERATE = "app.operate"
POLICY_ATTR = "access_policy"


def is_operator(user) -> bool:
    return user.is_authenticated and user.has_perm(OPERATE)


def _declare(view, policy):
    setattr(view, POLICY_ATTR, policy)
    return view


def public(view):
    """No login needed (the login page only)."""
    return _declare(login_not_required(view), "public")


def any_role(view):
    return _declare(view, "any_role")


def operator_required(view):
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if not is_operator(request.user):
            raise PermissionDenied("Only operators may open this page or do this.")
        return view(request, *args, **kwargs)

    return _declare(wrapped, "operator")


def token(view):
    """The JSON API's endpoints: app.api.tokens checks the token and its scope in the view."""
    return _declare(csrf_exempt(login_not_required(view)), "token")


def metrics_token(view):
    """Prometheus' scraper: `Authorization: Bearer <METRICS_TOKEN>`, not a session; 404 while
    no METRICS_TOKEN is set (the metrics are off), 401 without it."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        expected = settings.METRICS_TOKEN
        if not expected:
            return HttpResponse("metrics are off: set METRICS_TOKEN to serve them\n", status=404, content_type="text/plain")
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            response = HttpResponse(
                "missing or wrong token: send METRICS_TOKEN as 'Authorization: Bearer <token>'\n", status=401,
                content_type="text/plain",
            )
            response["WWW-Authenticate"] = 'Bearer realm="django-mlops metrics"'
            return response
        return view(request, *args, **kwargs)

    return _declare(csrf_exempt(login_not_required(wrapped)), "metrics")


def roles(request):
    """Template context: what the navigation may show."""
    user = getattr(request, "user", None)
    return {"is_operator": bool(user and is_operator(user))}
