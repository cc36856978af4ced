"""Run tags: one rule for every way a run gets them (the start form, the API, a schedule,
`ctx.tag()` in a step) and for the run list's filter.

A tag is 1 to 50 characters of lowercase letters, digits and `- _ . : =`, so `env=prod`,
`team:ml` and `v1.2` work; what is given is stripped and lower-cased first. A run has at
most 20. A tag that breaks the rule raises TagError (a ValueError) naming it, so the form,
the API and a step all say which one is wrong. Adding a tag a run has already does nothing.
"""

import re
from collections.abc import Iterable

from app.models import Run, RunTag

MAX_LENGTH = RunTag._meta.get_field("name").max_length  # 50
MAX_PER_RUN = 20
ALLOWED = re.compile(r"[a-z0-9_.:=-]+")
RULE = f"a tag is 1 to {MAX_LENGTH} lowercase letters, digits and - _ . : = (e.g. env=prod, team:ml)"
SEPARATORS = re.compile(r"[,\s]+")


class TagError(ValueError):
    """A tag that breaks the rule, or too many of them; the message names the tag."""


def normalise(name) -> str:
    """The tag as stored (stripped, lower-cased), or TagError naming what was given."""
    if not isinstance(name, str):
        raise TagError(f"a tag is text, not {type(name).__name__} {name!r}")
    tag = name.strip().lower()
    if not tag:
        raise TagError(f"a tag cannot be empty: {RULE}")
    if len(tag) > MAX_LENGTH:
        raise TagError(f"tag {name.strip()!r} is too long ({len(tag)} characters): {RULE}")
    if not ALLOWED.fullmatch(tag):
        raise TagError(f"tag {name.strip()!r} is not valid: {RULE}")
    return tag


def check(names: Iterable) -> list[str]:
    """The tags normalised, without repeats, sorted; TagError for the first bad one or for
    more than MAX_PER_RUN."""
    tags = sorted({normalise(name) for name in names})
    if len(tags) > MAX_PER_RUN:
        raise TagError(f"a run has at most {MAX_PER_RUN} tags; these are {len(tags)}")
    return tags


def parse(text: str) -> list[str]:
    """Tags from text separated by commas or spaces ("env=prod, team:ml"), checked."""
    return check(piece for piece in SEPARATORS.split(text or "") if piece)


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
