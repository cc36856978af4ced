"""Times as people read them: in the viewer's time zone, saying which, with UTC on hover.

- `TimezoneMiddleware` makes the viewer's zone the current one for the request: the zone they
  chose on their settings page (/account/; kept in the session, copied there at sign-in, so
  no query per request), else the zone their browser reports (static/js/live.js keeps it in
  the `tz` cookie), else TIME_ZONE.
  Django's `date` filter and `localtime` then convert every aware time to it.
- The `when` and `ago` filters (built in for every template, see TEMPLATES) write a time as
  `<time>` with its ISO value and a title giving it in UTC and how long ago it was.
- `ago` and a running `took` carry the seconds they showed when rendered (`data-ago`,
  `data-elapsed`); static/js/live.js counts them on every second, so a page that a poll
  answered with "nothing changed" (204) still shows "12 s ago" and "1 min 05 s so far"
  right, with no clock shared between browser and server.
"""

import datetime
import functools
import zoneinfo

from django import template
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

COOKIE = "tz"
SESSION_KEY = "time_zone"  # the zone the person chose on their settings page, copied at sign-in
register = template.Library()


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone_named(name: str) -> zoneinfo.ZoneInfo | None:
    return zoneinfo.ZoneInfo(name) if name in _zones() else None


def remember(session, time_zone: str) -> None:
    """Show this session's pages in `time_zone` ("" : the browser's)."""
    if time_zone:
        session[SESSION_KEY] = time_zone
    else:
        session.pop(SESSION_KEY, None)


@receiver(user_logged_in, dispatch_uid="times.chosen_zone")
def _chosen_zone_at_sign_in(sender, request, user, **kwargs):
    from app.models import Preferences

    chosen = Preferences.objects.filter(user=user).values_list("time_zone", flat=True).first()
    if request is not None and hasattr(request, "session"):
        remember(request.session, chosen or "")


class TimezoneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = getattr(request, "session", None)
        chosen = session.get(SESSION_KEY, "") if session is not None else ""
        zone = zone_named(chosen or request.COOKIES.get(COOKIE, ""))
        if zone is not None:
            timezone.activate(zone)
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


FORMATS = {"minutes": "Y-m-d H:i", "seconds": "Y-m-d H:i:s", "date": "Y-m-d"}


def _ago(value: datetime.datetime, now: datetime.datetime) -> str:
    seconds = (now - value).total_seconds()
    if -5 < seconds < 5:
        return "just now"
    if seconds < 0:
        return f"in {timesince(now, value)}"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    return f"{timesince(value, now)} ago"


def _title(value: datetime.datetime, now: datetime.datetime) -> str:
    utc = value.astimezone(datetime.UTC)
    return f"{utc:%Y-%m-%d %H:%M:%S} UTC · {_ago(value, now)}"


@register.filter
def when(value, style="minutes"):
    """`{{ run.created_at|when }}` → 2026-12-02 20:33 in the viewer's zone; `when:"seconds"`
    adds the seconds, `when:"date"` is the day only, and `when:"time"` is the time of day
    alone when it is today (a step's start on a run page) and with its date when it is not."""
    if not isinstance(value, datetime.datetime):
        return ""
    now = timezone.now()
    local = timezone.localtime(value)
    if style == "time":
        shown = date_format(local, "H:i:s" if local.date() == timezone.localtime(now).date() else "Y-m-d H:i:s")
    else:
        shown = date_format(local, FORMATS.get(style, FORMATS["minutes"]))
    return format_html('<time datetime="{}" title="{}">{}</time>', value.isoformat(), _title(value, now), shown)


@register.filter
def ago(value):
    """`{{ run.created_at|ago }}` → "12 s ago", "just now", "3 hours ago", with the time itself
    (the viewer's zone and UTC) on hover."""
    if not isinstance(value, datetime.datetime):
        return ""
    now = timezone.now()
    local = timezone.localtime(value)
    title = f"{date_format(local, 'Y-m-d H:i:s T')} · {value.astimezone(datetime.UTC):%H:%M:%S} UTC"
    return format_html('<time datetime="{}" title="{}" data-ago="{}">{}</time>', value.isoformat(), title,
                       f"{(now - value).total_seconds():.1f}", _ago(value, now))


def _span(seconds: float, precise: bool) -> str:
    if seconds < 60:
        return f"{seconds:.3f} s" if precise and seconds < 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def took(row, style=""):
    """How long a run, step or attempt took (`started_at` to `finished_at`), or, while it
    runs, how long it has been running so far (static/js/live.js counts it on between
    polls, from `data-elapsed`): "—" before it starts. `took:"precise"` gives milliseconds
    under 10 s (steps are often that quick)."""
    started, finished = getattr(row, "started_at", None), getattr(row, "finished_at", None)
    if started is None:
        return mark_safe('<span class="muted">—</span>')  # a constant: nothing to escape
    if finished is not None:
        return _span((finished - started).total_seconds(), style == "precise")
    so_far = max((timezone.now() - started).total_seconds(), 0)
    return format_html('<span class="elapsed" title="running since {}" data-elapsed="{}">{} so far</span>',
                       timezone.localtime(started).strftime("%H:%M:%S"), f"{so_far:.1f}", _span(so_far, False))
