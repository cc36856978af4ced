"""The rule of run tags, for every way a run gets them (the start form, the API, a schedule,
`ctx.tag()` in a step or in `run_local`) and for the run list's filter; app.runs.tags
stores them. No Django here: the pipeline API's test harness uses it too.

A tag is 1 to 50 characters of lowercase letters, digits and `- _ . : =`, so `env=prod`,
`team:ml` and `v1.2` work; what is given is stripped and lower-cased first. A run has at
most 20. A tag that breaks the rule raises TagError (a ValueError) naming it, so the form,
the API and a step all say which one is wrong. Adding a tag a run has already does nothing.
"""

import re
from collections.abc import Iterable

MAX_LENGTH = 50  # RunTag.name's max_length
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


