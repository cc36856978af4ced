"""Cheap live pages: a poll answers only what changed since the version the page holds.

A live page's polling element carries `data-version`, a short text naming what the page
shows. static/js/live.js sends it back with every poll (`X-Version`) and keeps the one the
answer names (the `X-Version` header). The server works out the current version first,
before rendering anything, and then answers:

- 204 No Content when nothing changed: htmx leaves the page as it is (times keep counting
  in the browser, see app/web/times.py);
- for a run page whose steps' statuses it can read from the version (`run_version`), only
  the parts that changed, out of band: the summary, the rows of the steps that changed, the
  DAG nodes' new statuses (as data for live.js: SVG cannot be swapped as HTML) and the
  metrics; the DAG picture itself is sent once, with the page. One step's change on a
  1,000-step run is ~2 KB instead of ~1.5 MB;
- otherwise the whole live part, as before (a page from an older version of the site, a
  run that has just finished: 286 then stops the polling).

The version holds no secret and is not trusted: a version that cannot be read is treated
as "the page shows nothing", and gets the whole part. A run's steps' statuses are in the
version itself, run-length encoded ("s1*998.r2.q0"), so the server keeps nothing per
viewer and any web process of any machine can answer any poll.
"""

import hashlib
import itertools
import zlib

from django.http import HttpResponse

from app.models import Status

HEADER = "X-Version"

# One letter per status, then the attempt: "s1" (succeeded at its first attempt).
CODES = {
    Status.PENDING: "p", Status.QUEUED: "q", Status.RUNNING: "r", Status.SUCCEEDED: "s", Status.FAILED: "f",
    Status.UPSTREAM_FAILED: "u", Status.CANCELLED: "c", Status.RETRYING: "t", Status.SKIPPED: "k",
    Status.AWAITING: "w",
}
MAX_STEPS = 100_000  # a version claiming more steps is not read


def digest(*parts) -> str:
    """A short name for a set of values: equal values, equal names."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=6).hexdigest()


def held(request) -> str:
    """The version the polling page holds ("" for a page that sent none)."""
    return request.headers.get(HEADER, "")[:20_000]


def unchanged(version: str) -> HttpResponse:
    response = HttpResponse(status=204)
    response[HEADER] = version
    return response


def step_code(status: str, attempt: int, items: tuple[int, int] | None = None, waiting: str = "") -> str:
    """A step's status and attempt; for a mapped step also its items finished and failed;
    for a step that waits for a slot (`waiting`: what it says) its letter in capitals and a
    digest of that, so "1 of 2 in use" becoming "2 of 2" reaches the page."""
    if waiting:
        return f"{CODES.get(status, 'x').upper()}{attempt}{zlib.crc32(waiting.encode()) % 1_000_000:06d}"
    return f"{CODES.get(status, 'x')}{attempt}" + (f"{items[0]:06d}{items[1]:06d}" if items else "")


def encode(codes: list[str]) -> str:
    """["s1", "s1", "r2"] → "s1*2.r2"."""
    return ".".join(
        code if count == 1 else f"{code}*{count}"
        for code, count in ((code, len(list(group))) for code, group in itertools.groupby(codes))
    )


def decode(text: str) -> list[str] | None:
    """The inverse of `encode`, or None for text `encode` did not write."""
    codes: list[str] = []
    for token in text.split(".") if text else ():
        code, star, count = token.partition("*")
        if not (2 <= len(code) <= 20 and code[0].isalpha() and code[1:].isdigit()):
            return None
        if star and not (count.isdigit() and len(count) <= 6 and int(count) > 1):
            return None
        repeat = int(count) if star else 1
        if len(codes) + repeat > MAX_STEPS:  # checked before the list grows
            return None
        codes.extend([code] * repeat)
    return codes


def run_version(summary: str, codes: list[str]) -> str:
    """A run page's version: what its summary shows (a digest) and each step's status."""
    return f"{summary}~{encode(codes)}"


def changed_steps(version: str, summary: str, codes: list[str]) -> list[int] | None:
    """Against the version a run page holds, the positions of the steps whose status or
    attempt changed; None when the version cannot be read or is of another shape (without
    the DAG picture that is there now, another number of steps)."""
    held_summary, sep, held_steps = version.partition("~")
    held_codes = decode(held_steps) if sep else None
    if held_codes is None or len(held_codes) != len(codes) or held_summary[:1] != summary[:1]:
        return None
    return [i for i, (old, new) in enumerate(zip(held_codes, codes)) if old != new]
