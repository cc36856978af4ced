"""Restore a backup made by `manage.py backup` into this installation (app.ops.backup)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from app.ops import backup


class Command(BaseCommand):
    help = (
        "Restore the backup in SRC (database and artifact store) into this installation, which must be empty "
        "unless --replace; stop the site and every worker first. Migrates, and queues the queued steps again."
    )

    def add_arguments(self, parser):
        parser.add_argument("src", help="a directory written by manage.py backup")
        parser.add_argument("--replace", action="store_true", help="overwrite an installation that has runs already")

    def handle(self, src, replace, **options):
        try:
            restored = backup.restore(Path(src), replace=replace, by="manage.py restore")
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Restored {restored.summary()}.")
