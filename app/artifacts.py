"""Where step outputs live: files under ARTIFACTS_DIR, addressed by paths relative to it.

Outputs are pickled, written to a temporary file and renamed into place, so a reader on
another worker never sees half a file. Paths come only from our own records and are
checked to stay inside the store.
"""

import os
import pickle
import tempfile
from pathlib import Path

from django.conf import settings


class ArtifactError(Exception):
    pass


def root() -> Path:
    return Path(settings.ARTIFACTS_DIR)


def resolve(relative_path: str) -> Path:
    """The absolute path of an artifact, refusing anything that would leave the store."""
    base = root().resolve()
    path = (base / relative_path).resolve()
    if base != path and base not in path.parents:
        raise ArtifactError(f"artifact path {relative_path!r} is outside the artifact store")
    return path


def step_dir(run_id: int, step_name: str) -> Path:
    """A directory a step may write extra files into (created on demand)."""
    path = resolve(f"runs/{int(run_id)}/{step_name}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomically(relative_path: str, write) -> Path:
    """Call `write(temporary_path)` and rename the file into place, so a reader never sees
    half of it; returns the final path."""
    target = resolve(relative_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def save_output(run_id: int, step_name: str, value, attempt: int = 1) -> str:
    """Persist a step's return value; returns its path relative to the store. Each attempt
    has a file of its own, so an attempt given up for dead that finishes late cannot
    overwrite the output of the attempt that replaced it."""
    suffix = ".pkl" if attempt == 1 else f".{int(attempt)}.pkl"  # the first attempt keeps the old name
    relative = f"runs/{int(run_id)}/{step_name}{suffix}"

    def write(path):
        with open(path, "wb") as handle:
            pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)

    write_atomically(relative, write)
    return relative


def load_output(relative_path: str):
    """Load a step output saved by save_output."""
    path = resolve(relative_path)
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)
    except FileNotFoundError:
        raise ArtifactError(f"the saved output {relative_path!r} is missing from the artifact store") from None


# --- step logs ---------------------------------------------------------------------------
# One file per attempt, appended while the step runs (app.runs.capture), so what a step
# printed survives its process being killed, and a page reads only the end of it.

TAIL_LINES = 200
TAIL_BYTES = 64 * 1024


def log_path(run_id: int, step_name: str, attempt: int) -> str:
    """Where the log of one attempt of a step run is kept, relative to the store."""
    return f"logs/{int(run_id)}/{step_name}.{int(attempt)}.log"


def log_size(relative_path: str) -> int | None:
    """The log file's size in bytes, or None when there is none."""
    try:
        return resolve(relative_path).stat().st_size
    except FileNotFoundError:
        return None


def log_tail(relative_path: str, lines: int = TAIL_LINES, max_bytes: int = TAIL_BYTES) -> str:
    """The last `lines` lines of a log (at most `max_bytes` of it), or "" when there is none."""
    try:
        with open(resolve(relative_path), "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    kept = text.splitlines(keepends=True)
    if size > max_bytes and kept:
        kept = kept[1:]  # the first line was cut in the middle
    return "".join(kept[-lines:])
