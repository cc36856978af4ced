"""The artifact store: step outputs and model files, through Django's storage API
(`STORAGES["artifacts"]`, app.settings.artifact_storage).

On one machine it is a FileSystemStorage at ARTIFACTS_DIR; with ARTIFACTS_URL=s3://… it is
django-storages' S3Storage, so a step run by a worker on one machine reads the outputs a
worker on another wrote, and the web serves models and logs from any of them. Only what
differs between the two is written twice here: how a write is made atomic, and how a file
that code needs on disk (a model format saves to and loads from a path) gets there.

- Atomic writes, so a reader never sees half a file: locally a temporary file renamed into
  place (as before); on S3 a PUT is atomic already (a reader gets the old object or the
  whole new one), so the file is written to a local temporary file and uploaded.
- Names are relative to the store ('runs/3/train.pkl'), come only from our own records and
  are checked not to leave it (`check_name`; locally `resolve` also follows symlinks).
"""

import contextlib
import functools
import os
import posixpath
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, storages

STORE_ID = "store-id"


class ArtifactError(Exception):
    pass


class MissingArtifact(ArtifactError):
    """What our records name is not in the store."""


def storage():
    """The store's Django storage backend (cached by Django, one per process)."""
    return storages["artifacts"]


def is_local() -> bool:
    return isinstance(storage(), FileSystemStorage)


def where() -> str:
    """The store as an operator would look for it: a directory, or s3://bucket/prefix."""
    store = storage()
    if isinstance(store, FileSystemStorage):
        return str(Path(store.location))
    bucket = getattr(store, "bucket_name", None)
    if bucket is None:
        return type(store).__name__
    location = f"s3://{bucket}/{store.location}".rstrip("/")
    endpoint = getattr(store, "endpoint_url", None)
    return f"{location} ({endpoint})" if endpoint else location


def check_name(name: str) -> str:
    """`name`, if it stays inside the store: relative, no '..', no empty or '.' parts."""
    if (
        not isinstance(name, str) or not name or "\\" in name or "\x00" in name
        or name.startswith("/") or posixpath.normpath(name) != name or name.split("/")[0] == ".."
    ):
        raise ArtifactError(f"artifact path {name!r} is outside the artifact store")
    return name


def root() -> Path:
    """The directory of a store on this machine's disk."""
    store = storage()
    if not isinstance(store, FileSystemStorage):
        raise ArtifactError(f"the artifact store {where()} is not a directory on this machine")
    return Path(store.location)


def resolve(name: str) -> Path:
    """The absolute path of an artifact in a store on disk, refusing anything that would
    leave the store (symlinks followed). Called several times per step: plain strings and
    one realpath, not pathlib's (which measured 200 µs a call, a tenth of a no-op step)."""
    base = _real(str(root()))
    path = os.path.realpath(os.path.join(base, check_name(name)))
    if path != base and not path.startswith(base + os.sep):
        raise ArtifactError(f"artifact path {name!r} is outside the artifact store")
    return Path(path)


@functools.lru_cache(maxsize=16)
def _real(location: str) -> str:
    """The store's directory with its symlinks followed, once per process and location."""
    return os.path.realpath(location)


def scratch_dir(name: str) -> Path:
    """A directory on this machine's disk for what cannot be written to a remote store
    directly; created on demand."""
    path = Path(settings.ARTIFACTS_SCRATCH_DIR) / check_name(name)
    path.mkdir(parents=True, exist_ok=True)
    return path


def step_dir(run_id: int, step_name: str) -> Path:
    """A directory a step may write extra files into (created on demand). With the store on
    disk it is in the store (runs/<run>/<step>); with a remote store it is a scratch
    directory on this machine's disk (DATA_DIR/scratch/runs/<run>/<step>), not uploaded:
    what other machines need must be returned (an output) or registered (a model)."""
    name = f"runs/{int(run_id)}/{step_name}"
    if not is_local():
        return scratch_dir(name)
    path = resolve(name)
    path.mkdir(parents=True, exist_ok=True)
    return path


class Placement:
    """A file being written as the artifact `name`: a temporary file (created when first
    asked for), put in the store whole by `place` (renamed into place on disk, uploaded to
    an object store), removed by `discard` if it was not placed."""

    def __init__(self, name: str):
        self.name = check_name(name)
        self.local = is_local()
        self.target = None  # resolved when a file is written: an inline output has none
        self.tmp = None

    def path(self) -> str:
        if self.tmp is None:
            if self.local:
                self.target = resolve(self.name)
                directory = self.target.parent
                if not directory.is_dir():
                    directory.mkdir(parents=True, exist_ok=True)
            else:
                directory = scratch_dir("tmp")
            fd, self.tmp = tempfile.mkstemp(dir=directory, prefix=f".{posixpath.basename(self.name)}.", suffix=".tmp")
            os.close(fd)
        return self.tmp

    def place(self) -> int:
        """Put the written file in the store as `name`; returns its size in bytes."""
        size = os.path.getsize(self.tmp)
        if self.local:
            os.replace(self.tmp, self.target)
            self.tmp = None
        else:
            with open(self.tmp, "rb") as handle:
                put(self.name, File(handle))
        return size

    def discard(self):
        if self.tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
            self.tmp = None


def write_atomically(name: str, write) -> int:
    """Call `write(temporary_path)` and put the file in the store as `name` in one step, so
    a reader never sees half of it; returns its size in bytes."""
    placement = Placement(name)
    try:
        write(placement.path())
        return placement.place()
    finally:
        placement.discard()


def put(name: str, content):
    """Store `content` (a Django File) as `name` in a remote store, overwriting: one PUT."""
    saved = storage().save(name, content)
    if saved != name:  # a backend that keeps both files under new names would lose ours
        storage().delete(saved)
        raise ArtifactError(f"the artifact store saved {name!r} as {saved!r}; it must overwrite (file_overwrite)")


def delete(name: str):
    """Remove an artifact; nothing happens when there is none."""
    if is_local():
        resolve(name).unlink(missing_ok=True)
    else:
        storage().delete(check_name(name))


@contextlib.contextmanager
def local_copy(name: str):
    """The path of an artifact on this machine's disk, for code that reads a path (model
    formats): the file itself in a store on disk, else a temporary download removed after."""
    if is_local():
        path = resolve(name)
        if not path.is_file():
            raise MissingArtifact(f"{name!r} is missing from the artifact store")
        yield path
        return
    fd, tmp = tempfile.mkstemp(dir=scratch_dir("tmp"), prefix=".", suffix=f".{posixpath.basename(name)}")
    try:
        with os.fdopen(fd, "wb") as local, open_artifact(name) as remote:
            shutil.copyfileobj(remote, local, 1024 * 1024)
        yield Path(tmp)
    finally:
        os.unlink(tmp)


def open_artifact(name: str):
    """An artifact opened for reading; ArtifactError when it is missing."""
    try:
        if is_local():
            return open(resolve(name), "rb")
        return storage().open(check_name(name), "rb")
    except FileNotFoundError:
        raise MissingArtifact(f"{name!r} is missing from the artifact store") from None


# --- the store's id ------------------------------------------------------------------------
# An object holding a random id, also kept in the database (app.runs.store_check), so a
# process whose store is not the database's finds out before it runs anything.


def read_store_id() -> str | None:
    try:
        with open_artifact(STORE_ID) as handle:
            return handle.read().decode("ascii", errors="replace").strip()
    except MissingArtifact:
        return None


def write_store_id(value: str):
    data = value.encode("ascii")
    if is_local():
        write_atomically(STORE_ID, lambda path: Path(path).write_bytes(data))
    else:
        put(STORE_ID, ContentFile(data))


def new_store_id() -> str:
    return secrets.token_hex(16)


# --- whole trees: what retention (app.ops.retention) and backups (app.ops.backup) walk -------


def walk(prefix: str = "") -> Iterator[tuple[str, int]]:
    """(name, size in bytes) of every artifact under `prefix` ('' for the whole store), in
    no particular order. An object store is listed a thousand keys a request, sizes
    included, not asked about each file."""
    if prefix:
        check_name(prefix)
    if is_local():
        base = _real(str(root()))
        top = resolve(prefix) if prefix else Path(base)
        for directory, _dirs, files in os.walk(top):
            for file in files:
                path = os.path.join(directory, file)
                with contextlib.suppress(FileNotFoundError):  # removed while we walk
                    yield os.path.relpath(path, base).replace(os.sep, "/"), os.path.getsize(path)
        return
    store = storage()
    bucket = getattr(store, "bucket", None)
    if bucket is not None:
        location = store.location.strip("/")
        start = len(location) + 1 if location else 0
        key_prefix = "/".join(part for part in (location, prefix) if part)
        for summary in bucket.objects.filter(Prefix=f"{key_prefix}/" if key_prefix else ""):
            yield summary.key[start:], summary.size
        return
    yield from _listed(prefix)


def _listed(prefix: str) -> Iterator[tuple[str, int]]:
    """The generic Storage API's way: listdir, directory by directory, and a size each."""
    store = storage()
    directories, files = store.listdir(prefix)
    for file in files:
        name = posixpath.join(prefix, file) if prefix else file
        yield name, store.size(name)
    for directory in directories:
        yield from _listed(posixpath.join(prefix, directory) if prefix else directory)


def delete_tree(prefix: str) -> tuple[int, int]:
    """Remove every artifact under `prefix` (a run's outputs or logs); returns how many
    files and bytes that freed. Nothing happens when there is none."""
    check_name(prefix)
    found = list(walk(prefix))
    if not found:
        return 0, 0
    if is_local():
        shutil.rmtree(resolve(prefix), ignore_errors=True)
    else:
        store = storage()
        bucket = getattr(store, "bucket", None)
        if bucket is not None:
            location = store.location.strip("/")
            keys = [{"Key": "/".join(part for part in (location, name) if part)} for name, _size in found]
            for start in range(0, len(keys), 1000):  # S3 deletes at most 1,000 keys a request
                bucket.delete_objects(Delete={"Objects": keys[start:start + 1000], "Quiet": True})
        else:
            for name, _size in found:
                store.delete(name)
    return len(found), sum(size for _name, size in found)


def size_of(name: str) -> int | None:
    """The size of one artifact in bytes, or None when it is missing."""
    try:
        if is_local():
            return os.path.getsize(resolve(name))
        return storage().size(check_name(name))
    except (FileNotFoundError, OSError):
        return None
