import os
import secrets

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand

DEMO_USERS = [
    # username, group, superuser, env var holding its password
    ("operator", "operators", False, "DEMO_OPERATOR_PASSWORD"),
    ("stakeholder", "stakeholders", False, "DEMO_STAKEHOLDER_PASSWORD"),
    ("admin", None, True, "DEMO_ADMIN_PASSWORD"),
]


class Command(BaseCommand):
    help = "Create the demo users (operator, stakeholder, admin) if they do not exist yet."

    def handle(self, **options):
        for username, group, superuser, env_var in DEMO_USERS:
            if User.objects.filter(username=username).exists():
                continue
            password = os.environ.get(env_var) or secrets.token_urlsafe(12)
            user = User.objects.create_user(
                username, password=password, is_staff=superuser, is_superuser=superuser
            )
            if group:
                user.groups.add(Group.objects.get(name=group))
            shown = f"from ${env_var}" if os.environ.get(env_var) else password
            self.stdout.write(self.style.SUCCESS(f"created user {username!r} with password: {shown}"))
