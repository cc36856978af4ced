"""What the page benchmarks share: a fresh site in a temporary DATA_DIR, and an operator."""

import os
import shutil
import tempfile


def run_in_temporary_site(prefix: str, bench, args, **env):
    """Call `bench(args)` with the settings pointed at a new temporary DATA_DIR (plus `env`),
    Django set up and the database migrated; the directory is removed after, also on errors."""
    data_dir = tempfile.mkdtemp(prefix=prefix)
    os.environ.update(DATA_DIR=data_dir, SECRET_KEY="bench", DJANGO_SETTINGS_MODULE="app.settings",
                      ALLOWED_HOSTS="testserver", **env)
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        bench(args)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def operator():
    """A user in the operators group, "op"."""
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user("op")
    user.groups.add(Group.objects.get(name="operators"))
    return user
