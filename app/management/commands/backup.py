"""Back up the running site: its database and artifact store together (app.ops.backup)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from app.ops import backup


class Command(BaseCommand):
    help = (
        "Write a consistent backup of the database (SQLite's backup API, or pg_dump) and the artifact store "
        "into the new directory DEST, while the site and its workers keep running."
    )

    def add_arguments(self, parser):
        parser.add_argument("dest", help="a directory that does not exist yet (or is empty)")

    def handle(self, dest, **options):
        try:
            manifest = backup.backup(Path(dest), by="manage.py backup")
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Backed up {manifest.summary()} to {dest}.")
