"""API tokens for the prediction endpoint: random, shown once, stored as a SHA-256 digest.

A token has 256 random bits, so a fast hash is enough (there is nothing to brute-force, unlike a password)
and the lookup is one indexed query by digest.
"""

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from app import audit
from app.models import ApiToken, AuditAction

PREFIX = "mlops_"
# last_used_at is written at most this often per token, so serving is not a write per request.
TOUCH_EVERY = timedelta(minutes=1)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(user, name: str, by=None) -> tuple[ApiToken, str]:
    """A new token for `user` (made by `by`, the user or an admin); returns the row and the
    token itself, which is never stored and cannot be shown again."""
    name = (name or "").strip()
    if not name:
        raise ValueError("Give the token a name that says what it is for.")
    secret = PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(user=user, name=name[:100], prefix=secret[: len(PREFIX) + 4], digest=digest(secret))
        audit.record(by or user, AuditAction.TOKEN_CREATE, token, details={"for": user.get_username()})
    return token, secret


def revoke(token: ApiToken, by) -> bool:
    """Revoke a token; False if it was revoked already."""
    with transaction.atomic():
        done = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if done:
            audit.record(by, AuditAction.TOKEN_REVOKE, token, details={"for": token.user.get_username()})
    return bool(done)


def authenticate(header: str):
    """The active user owning the bearer token in an Authorization header, or None."""
    scheme, _, secret = (header or "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret.startswith(PREFIX):
        return None
    token = (
        ApiToken.objects.filter(digest=digest(secret), revoked_at__isnull=True, user__is_active=True)
        .select_related("user")
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
