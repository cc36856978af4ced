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


def save_output(run_id: int, step_name: str, value) -> str:
    """Persist a step's return value; returns its path relative to the store."""
    relative = f"runs/{int(run_id)}/{step_name}.pkl"

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
