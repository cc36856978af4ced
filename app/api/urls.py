"""The API's URLs: django-ninja's, each view declared for the role matrix and answering in
JSON where Django or ninja would not (a wrong method's 405, a 404 raised outside an endpoint),
plus a JSON 404 for every other path under /api/."""

import functools

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.urls import URLPattern, re_path
from django.views.decorators.csrf import csrf_exempt

from app.api.main import api

POLICY_ATTR = "access_policy"  # what app.web.access declares and the role matrix test reads
SIGNED_IN = {"openapi-json", "openapi-view"}  # the schema and docs: for anyone signed in


def _json_errors(view):
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            response = view(request, *args, **kwargs)
        except Http404 as exc:
            return JsonResponse({"error": str(exc) or f"nothing at {request.path}"}, status=404)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = response["Allow"]
            response = JsonResponse({"error": f"{request.method} is not allowed here: use {allowed}"}, status=405)
            response["Allow"] = allowed
        return response

    return wrapped


def not_found(request, rest=""):
    return JsonResponse(
        {"error": f"there is no API endpoint at {request.path}; the endpoints are listed at /api/docs"}, status=404
    )


def _declared(pattern: URLPattern) -> URLPattern:
    view = _json_errors(pattern.callback)
    if pattern.name in SIGNED_IN:
        setattr(view, POLICY_ATTR, "any_role")
    elif pattern.name == "api-root":
        view = login_not_required(view)
        setattr(view, POLICY_ATTR, "public")
    else:
        view = csrf_exempt(login_not_required(view))
        setattr(view, POLICY_ATTR, "token")
    return URLPattern(pattern.pattern, view, pattern.default_args, pattern.name)


def urlpatterns():
    patterns, _app, _namespace = api.urls
    catch_all = csrf_exempt(login_not_required(not_found))
    setattr(catch_all, POLICY_ATTR, "public")
    return [_declared(p) for p in patterns] + [re_path(r"^(?P<rest>.*)$", catch_all, name="not_found")]
