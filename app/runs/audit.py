"""The audit trail: one call per operator action, in the same transaction as the action."""

from app.models import AuditEvent


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
    if target is not None:
        event.target_type = type(target)._meta.verbose_name
        event.target_id = str(target.pk)
        event.target_label = str(target)[:200]
        url = getattr(target, "get_absolute_url", None)
        event.target_url = url() if url else ""
    event.save()
    return event
