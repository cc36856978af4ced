"""The site's URLs plus the floor of bench/ui_scale.py: a bare view rendering a trivial
template behind the same middleware (session, login, CSP …), with no query of its own."""

from django.http import HttpResponse
from django.template import engines
from django.urls import path

from app.urls import handler400, handler403, handler404, handler500  # noqa: F401
from app.urls import urlpatterns as site
from app.web.access import any_role

TRIVIAL = engines["django"].from_string("<!doctype html><title>bare</title><p>Hello {{ name }}</p>")


@any_role
def bare(request):
    return HttpResponse(TRIVIAL.render({"name": request.user.get_username()}, request))


urlpatterns = [path("bench/bare/", bare), *site]
