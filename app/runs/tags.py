"""Run tags in the database: stored with a new run, added by `ctx.tag()`, read for the pages.
The rule (what a tag may be, how text is read into tags) is app.pipelines.tags.
"""

from collections.abc import Iterable

from app.models import Run, RunTag
from app.pipelines.tags import MAX_LENGTH, MAX_PER_RUN, RULE, TagError, check, normalise, parse  # noqa: F401


def as_text(names: Iterable[str]) -> str:
    """The text `parse` reads back into the same tags."""
    return ", ".join(names)


def save_new(run: Run, tags: list[str]):
    """Store the checked `tags` (from `check`) of a run created in this transaction."""
    RunTag.objects.bulk_create([RunTag(run=run, name=name) for name in tags])


def names_of(run: Run) -> list[str]:
    """The run's tags, sorted (from a prefetch when there is one)."""
    return sorted(tag.name for tag in run.tags.all())


def add(run_id: int, names: Iterable) -> list[str]:
    """Tag a run that exists (`ctx.tag()`): the tags it did not have are added, at most
    MAX_PER_RUN in all; returns the run's tags. The limit is read, not locked: two steps
    tagging the same run at the same moment may pass it by a few."""
    tags = check(names)
    have = set(RunTag.objects.filter(run_id=run_id).values_list("name", flat=True))
    new = [name for name in tags if name not in have]
    if len(have) + len(new) > MAX_PER_RUN:
        raise TagError(
            f"run #{run_id} has {len(have)} tags; adding {', '.join(new)} would make {len(have) + len(new)}, "
            f"and a run has at most {MAX_PER_RUN}"
        )
    RunTag.objects.bulk_create([RunTag(run_id=run_id, name=name) for name in new], ignore_conflicts=True)
    return sorted(have | set(new))
