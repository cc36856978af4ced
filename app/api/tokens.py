"""API tokens: random, shown once, stored as a SHA-256 digest, with scopes and an expiry.

A token has 256 random bits, so a fast hash is enough (there is nothing to brute-force, unlike a password)
and the lookup is one indexed query by digest.

`check(header, scope)` is the one way in: it answers the token, or raises Refused with the
status and message the client gets (401: no such token, revoked, expired, inactive user;
403: the token lacks the scope, or its user lacks the role the scope needs).
"""

import datetime
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.functional import SimpleLazyObject

from app.models import ApiToken, AuditAction, TokenScope
from app.runs import audit

PREFIX = "mlops_"
# last_used_at is written at most this often per token, so serving is not a write per request.
TOUCH_EVERY = timedelta(minutes=1)
# Asked on every API request; as SQL it costs a fraction of the ORM query (bench/predict_latency.py).
LOOKUP_SQL = (
    f"SELECT t.id, t.user_id, t.name, t.scopes, t.expires_at, t.last_used_at FROM {ApiToken._meta.db_table} t"
    f" JOIN {get_user_model()._meta.db_table} u ON u.id = t.user_id"
    " WHERE t.digest = %s AND t.revoked_at IS NULL AND u.is_active"
)
SCOPES = [scope.value for scope in TokenScope]
# The scopes that read or change runs are an operator's: the API does what the dashboard lets its user do.
OPERATOR_SCOPES = {TokenScope.RUNS_READ, TokenScope.RUNS_WRITE}
OPERATE = "app.operate"
HOW = "send it as 'Authorization: Bearer <token>'; create one on the API tokens page"


class Refused(Exception):
    """The request may not go on; `status` (401 or 403) and the message say why."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class Caller:
    """Who an API request acts as: the token (by id and name) and its user, loaded lazily
    (the prediction endpoint never reads it, so it costs no query there)."""

    token_id: int
    name: str
    scopes: tuple[str, ...]
    user: object


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def allowed_scopes(user) -> list[str]:
    """The scopes `user` may give a token: runs:* only to operators (and superusers)."""
    return [s for s in SCOPES if s not in OPERATOR_SCOPES or user.has_perm(OPERATE)]


def create(user, name: str, by=None, *, scopes=(TokenScope.PREDICT,), expires_at=None) -> tuple[ApiToken, str]:
    """A new token for `user` (made by `by`, the user or an admin) with `scopes`, valid until
    `expires_at` (None: until revoked); returns the row and the token itself, which is never
    stored and cannot be shown again."""
    name = (name or "").strip()
    if not name:
        raise ValueError("Give the token a name that says what it is for.")
    scopes = [str(s) for s in scopes]
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"Choose at least one scope of {', '.join(SCOPES)}" + (f"; not {', '.join(unknown)}." if unknown else "."))
    refused = sorted(set(scopes) - set(allowed_scopes(user)))
    if refused:
        raise ValueError(f"{user.get_username()} is not an operator, so a token of theirs cannot have {', '.join(refused)}.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValueError("The expiry date must be in the future.")
    secret = PREFIX + secrets.token_urlsafe(32)
    ordered = " ".join(s for s in SCOPES if s in scopes)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user, name=name[:100], prefix=secret[: len(PREFIX) + 4], digest=digest(secret),
            scopes=ordered, expires_at=expires_at,
        )
        details = {"for": user.get_username(), "scopes": ordered}
        if expires_at is not None:
            details["expires"] = expires_at.isoformat(timespec="minutes")
        audit.record(by or user, AuditAction.TOKEN_CREATE, token, details=details)
    return token, secret


def revoke(token: ApiToken, by) -> bool:
    """Revoke a token; False if it was revoked already."""
    with transaction.atomic():
        done = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if done:
            audit.record(by, AuditAction.TOKEN_REVOKE, token, details={"for": token.user.get_username()})
    return bool(done)


def check(header: str, scope: str) -> Caller:
    """The caller of a request with this Authorization header, if its token may use `scope`;
    else Refused saying why."""
    scheme, _, secret = (header or "").partition(" ")
    secret = secret.strip()
    if not header:
        raise Refused(401, f"no API token: {HOW}")
    if scheme.lower() != "bearer" or not secret.startswith(PREFIX):
        raise Refused(401, f"that is not an API token of this site: {HOW}")
    with connection.cursor() as cursor:
        cursor.execute(LOOKUP_SQL, [digest(secret)])
        row = cursor.fetchone()
    if row is None:
        raise Refused(401, "unknown or revoked API token, or its user is deactivated")
    token_id, user_id, name, scopes, expires_at, last_used_at = row
    now = timezone.now()
    expires_at = _aware(expires_at)
    if expires_at is not None and expires_at <= now:
        raise Refused(401, f"the API token “{name}” expired on {expires_at:%Y-%m-%d %H:%M} UTC; create a new one")
    scopes = tuple(scopes.split())
    if scope not in scopes:
        raise Refused(403, f"the API token “{name}” does not have the scope {scope} (it has: {', '.join(scopes)}); "
                           f"create a token with {scope}")
    user = SimpleLazyObject(lambda: get_user_model().objects.get(pk=user_id))
    if scope in OPERATOR_SCOPES and not user.has_perm(OPERATE):
        raise Refused(403, f"the API token “{name}” belongs to a user who is no longer an operator, so it cannot use {scope}")
    last_used_at = _aware(last_used_at)
    if last_used_at is None or now - last_used_at > TOUCH_EVERY:
        ApiToken.objects.filter(pk=token_id).update(last_used_at=now)
    return Caller(token_id, name, scopes, user)


def _aware(value):
    """A timestamp read with raw SQL, as an aware datetime (SQLite gives naive UTC or text)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, datetime.timezone.utc)
    return value
