"""API tokens for the prediction endpoint: random, shown once, stored as a SHA-256 digest.

A token has 256 random bits, so a fast hash is enough (there is nothing to brute-force, unlike a password)
and the lookup is one indexed query by digest.
"""

import datetime
import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.functional import SimpleLazyObject

from app.models import ApiToken, AuditAction
from app.runs import audit

PREFIX = "mlops_"
# last_used_at is written at most this often per token, so serving is not a write per request.
TOUCH_EVERY = timedelta(minutes=1)
# Asked on every API request; as SQL it costs a fraction of the ORM query (bench/predict_latency.py).
LOOKUP_SQL = (
    f"SELECT t.id, t.user_id, t.last_used_at FROM {ApiToken._meta.db_table} t"
    f" JOIN {get_user_model()._meta.db_table} u ON u.id = t.user_id"
    " WHERE t.digest = %s AND t.revoked_at IS NULL AND u.is_active"
)


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
    with connection.cursor() as cursor:
        cursor.execute(LOOKUP_SQL, [digest(secret)])
        row = cursor.fetchone()
    if row is None:
        return None
    token_id, user_id, last_used_at = row
    now = timezone.now()
    last_used_at = _aware(last_used_at)
    if last_used_at is None or now - last_used_at > TOUCH_EVERY:
        ApiToken.objects.filter(pk=token_id).update(last_used_at=now)
    # A lazy user: the prediction view never reads it, so no query is made for it.
    return SimpleLazyObject(lambda: get_user_model().objects.get(pk=user_id))


def _aware(value):
    """A timestamp read with raw SQL, as an aware datetime (SQLite gives naive UTC or text)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, datetime.timezone.utc)
    return value
