"""`manage.py migrate`, one at a time: Django's migrate under a lock, so two containers or
release jobs starting together cannot both apply the same migrations (the second waits,
then finds nothing to do). PostgreSQL: an advisory lock held by this connection; SQLite (one
machine): an exclusive lock on a file next to the database."""

import contextlib
import fcntl
import logging
from pathlib import Path

from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import connections

log = logging.getLogger(__name__)

LOCK_ID = 0x6D6C6F7073  # "mlops"


@contextlib.contextmanager
def migration_lock(alias: str):
    connection = connections[alias]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_ID])
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_ID])
    elif connection.vendor == "sqlite" and connection.settings_dict["NAME"] not in ("", ":memory:"):
        path = Path(str(connection.settings_dict["NAME"]) + ".migrate-lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        yield


class Command(DjangoMigrate):
    def handle(self, *args, **options):
        with migration_lock(options["database"]):
            return super().handle(*args, **options)
