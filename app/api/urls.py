"""The API's URLs: django-ninja's, answering in JSON where Django or ninja would not (a wrong
method's 405, a 404 raised outside an endpoint), plus a JSON 404 for every other path under
/api/.

Who may call what is the web layer's to declare (app.web.access): the URL root hands its
decorators in, so the policy every view carries is set in one place for the whole site."""

import functools
from collections.abc import Callable

from django.http import Http404, HttpResponseNotAllowed
from django.urls import URLPattern, re_path
from django.views.decorators.csrf import csrf_exempt

from app.api.errors import error
from app.api.main import api

Decorator = Callable[[Callable], Callable]
SIGNED_IN = {"openapi-json", "openapi-view"}  # the schema and docs: for anyone signed in
PUBLIC = {"api-root"}


def _json_errors(view):
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            response = view(request, *args, **kwargs)
        except Http404 as exc:
            return error(str(exc) or f"nothing at {request.path}", 404)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = response["Allow"]
            response = error(f"{request.method} is not allowed here: use {allowed}", 405)
            response["Allow"] = allowed
        return response

    return wrapped


def not_found(request, rest=""):
    return error(f"there is no API endpoint at {request.path}; the endpoints are listed at /api/docs", 404)


def urlpatterns(*, token: Decorator, signed_in: Decorator, public: Decorator) -> list[URLPattern]:
    """ninja's patterns, each view wrapped by the decorator of its policy: `token` for the
    endpoints (an API token, no session, no CSRF), `signed_in` for the schema and the docs,
    `public` for the API root and the catch-all 404 (which answers any method without a
    CSRF check: a POST to a mistyped path is told it is mistyped, not that its CSRF token is
    missing)."""

    def declared(pattern: URLPattern) -> URLPattern:
        policy = signed_in if pattern.name in SIGNED_IN else public if pattern.name in PUBLIC else token
        return URLPattern(pattern.pattern, policy(_json_errors(pattern.callback)), pattern.default_args, pattern.name)

    patterns, _app, _namespace = api.urls
    return [declared(p) for p in patterns] + [re_path(r"^(?P<rest>.*)$", public(csrf_exempt(not_found)), name="not_found")]
