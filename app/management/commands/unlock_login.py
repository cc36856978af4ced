"""Lift the lock django-axes put on a login after too many failed attempts, at once."""

from axes.utils import reset
from django.core.management.base import BaseCommand

from app.models import AuditAction
from app.runs import audit


class Command(BaseCommand):
    help = "Lift the lockout of USERNAME (after LOGIN_FAILURE_LIMIT failed logins), from every address; audited."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, username, **options):
        lifted = reset(username=username)
        audit.record(None, AuditAction.LOGIN_UNLOCK, username=username, details={"failed_attempts_cleared": lifted})
        if lifted:
            self.stdout.write(f"Unlocked {username}: {lifted} record(s) of failed logins cleared.")
        else:
            self.stdout.write(f"{username} was not locked out (no failed logins on record); nothing to do.")
