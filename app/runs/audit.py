"""The audit trail: one call per operator action, in the same transaction as the action.

An action taken through the JSON API names the token it came with: the API wraps the action
in `through_token(name)`, and every event recorded inside carries `token` in its details."""

import contextlib
import contextvars

from app.models import AuditEvent

_token = contextvars.ContextVar("audit_token", default="")


@contextlib.contextmanager
def through_token(name: str):
    """Events recorded inside say they were made with the API token `name`."""
    reset = _token.set(name)
    try:
        yield
    finally:
        _token.reset(reset)


def record(user, action, target=None, *, pipeline_name="", details=None, username=""):
    """Write an audit event. `target` is a model instance (its str, type, id and URL are
    kept, so the event still reads well after the target is gone) or None. `username`: who
    it is about when there is no signed-in user (a login that was locked out)."""
    event = AuditEvent(
        user=user if user is not None and user.is_authenticated else None,
        username=user.get_username() if user is not None and user.is_authenticated else username,
        action=action,
        pipeline_name=pipeline_name or getattr(target, "pipeline_name", ""),
        details=details or {},
    )
    if _token.get():
        event.details = {**event.details, "token": _token.get()}
    if target is not None:
        event.target_type = type(target)._meta.verbose_name
        event.target_id = str(target.pk)
        event.target_label = str(target)[:200]
        url = getattr(target, "get_absolute_url", None)
        event.target_url = url() if url else ""
    event.save()
    return event
