"""The pages a person gets when something is wrong with the request, not with what they
asked for: nothing at that address (404), a bad request (400), not their role (403), an
expired form (the CSRF check), a wrong method (405) and our own failure (500). Each says what
happened in words and links somewhere useful; none names an exception.

A request for JSON (the API, an htmx poll) never gets these: the API answers JSON itself and
htmx does not swap an error into the page (the page's own notice says it, static/js/live.js).
"""

import logging

from django.http import Http404, HttpResponseNotAllowed, HttpResponseServerError
from django.shortcuts import render
from django.template import loader
from django.urls import Resolver404
from django.views.decorators.csrf import requires_csrf_token

log = logging.getLogger(__name__)

# Django's get_object_or_404 says "No Run matches the given query.": true, but not for people.
_GENERIC_NOT_FOUND = "matches the given query."


def up_one(path: str) -> str:
    """The page an action's URL belongs to: /runs/5/cancel/ → /runs/5/."""
    parts = [part for part in path.split("/") if part]
    return "/" + "".join(f"{part}/" for part in parts[:-1])


@requires_csrf_token
def not_found(request, exception=None):
    said = exception.args[0] if isinstance(exception, Http404) and not isinstance(exception, Resolver404) and \
        exception.args and isinstance(exception.args[0], str) else ""
    if said.endswith(_GENERIC_NOT_FOUND):
        said = ""
    context = {"message": said or f"There is nothing at {request.path}.", "back": up_one(request.path)}
    return render(request, "errors/404.html", context, status=404)


@requires_csrf_token
def bad_request(request, exception=None):
    return render(request, "errors/400.html", {"back": up_one(request.path)}, status=400)


@requires_csrf_token
def permission_denied(request, exception=None):
    said = str(exception) if exception is not None and exception.args else ""
    return render(request, "errors/403.html", {"message": said}, status=403)


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: almost always a form left open across a sign-out or a restart."""
    log.warning("%s: CSRF check failed (%s)", request.path, reason)
    return render(request, "errors/csrf.html", {"back": request.headers.get("Referer") or up_one(request.path)},
                  status=403)


def not_allowed(request, allowed: str):
    """What a page address answers to a method it does not take: usually a reload or a
    bookmark of the address a form was posted to."""
    context = {"method": request.method, "allowed": allowed, "back": up_one(request.path)}
    response = render(request, "errors/405.html", context, status=405)
    response["Allow"] = allowed
    return response


def server_error(request):
    """No template context: whatever failed may fail again while rendering one."""
    return HttpResponseServerError(loader.get_template("errors/500.html").render())


class NotAllowedPageMiddleware:
    """Django's require_POST answers a GET with an empty 405, a blank page: give people the
    page that says why, with a way back. The API's 405s are JSON already and pass through."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if isinstance(response, HttpResponseNotAllowed) and not response.content:
            return not_allowed(request, response["Allow"])
        return response
