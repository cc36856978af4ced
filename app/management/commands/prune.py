"""Delete old runs with their step runs, logs and artifacts, keeping whatever a deployed
model version came from (app.ops.retention); audited."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from app.ops import retention


class Command(BaseCommand):
    help = (
        "Delete finished runs older than --older-than (with their step runs, logs, outputs and never-deployed "
        "model versions), keeping each pipeline's newest --keep-last runs and every run a deployed version came from."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", default="30d", help="age of the runs to delete: 30d, 12h, 2w, 90m (default 30d)")
        parser.add_argument(
            "--keep-last", type=int, default=settings.PRUNE_KEEP_LAST,
            help=f"keep this many newest runs of each pipeline, however old (default PRUNE_KEEP_LAST, {settings.PRUNE_KEEP_LAST})",
        )
        parser.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")

    def handle(self, older_than, keep_last, dry_run, **options):
        try:
            age = retention.parse_age(older_than)
        except ValueError as exc:
            raise CommandError(f"--older-than: {exc}") from None
        if keep_last < 0:
            raise CommandError(f"--keep-last must be 0 or more, not {keep_last}")
        report = retention.prune(age, keep_last, by="manage.py prune", dry_run=dry_run)
        self.stdout.write(("Would delete " if dry_run else "Deleted ") + report.summary())
