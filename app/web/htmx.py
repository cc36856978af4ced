"""Flash messages on pages that htmx updates in place.

A message is shown in the page's message list, which is outside the part htmx swaps: after
an action done with htmx (cancel a run), the list would keep the previous action's message
("Run #7 started.") above a page that now says something else. So the htmx answer to an
action (its element sends `X-Action: 1`, kept across the redirect htmx follows) carries the
list again, out of band: the new messages, or none, replacing the old ones. Polls and live
previews leave the list alone: a message is read by a person, not consumed by a timer.

An action's element inside a polling part also sends `X-Poll: 0`: it would inherit the part's
`X-Poll: 1`, and a click is its user being active (app/web/security.py).
"""

from django.contrib.messages import get_messages
from django.template.loader import render_to_string


class MessagesMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            getattr(request, "htmx", False)
            and request.headers.get("X-Action") == "1"
            and 200 <= response.status_code < 300 and response.status_code != 204  # 286: the last poll's answer
            and response.get("Content-Type", "").startswith("text/html")
            and not response.streaming
        ):
            response.content += render_to_string(
                "includes/messages.html", {"messages": get_messages(request), "oob": True}
            ).encode()
        return response
