"""Step logs in the artifact store: one log per attempt of a step run, appended while the
step runs (app.runs.capture) and read while it is being written by pages on any machine.

In a store on disk a log is one file, `logs/<run>/<step>.<attempt>.log`, appended write by
write (the operating system keeps each write even if the process dies the next moment).

An object store has no append, and putting the growing log again whole at every flush would
send O(n²) bytes. So there a log is a "directory" of chunks that are never rewritten,
`logs/<run>/<step>.<attempt>.log.d/<offset>`: the writer buffers and puts one chunk at least
every FLUSH_SECONDS or CHUNK_BYTES (capture does that), each named by the byte offset of its
first byte in the log, twelve digits so that names sort in log order. Offsets as names, not
sequence numbers, are what let a reader work from one listing: every chunk's size but the
last one's is the difference of two names, so the log's size costs the listing and one HEAD,
and the tail reads only the chunks holding its last TAIL_BYTES. A download streams the chunks
in order. The per-attempt cap (STEP_LOG_MAX_BYTES) is the writer's, the same on both.
"""

import itertools
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

from django.core.files.base import ContentFile

from app.artifacts.store import check_name, is_local, put, resolve, storage

TAIL_LINES = 200
TAIL_BYTES = 64 * 1024
# An object store's log is put in chunks of at most this much, at least this often.
CHUNK_BYTES = 64 * 1024
FLUSH_SECONDS = 1.0
OFFSET_DIGITS = 12  # a chunk's name: up to ~1 TB of log per attempt
READ_BYTES = 64 * 1024


def log_path(run_id: int, step_name: str, attempt: int) -> str:
    """Where the log of one attempt of a step run is kept, relative to the store."""
    return f"logs/{int(run_id)}/{step_name}.{int(attempt)}.log"


class FileLog:
    """A log in a store on disk: every append goes to the file at once."""

    buffered = False

    def __init__(self, name: str):
        self.path = resolve(name)
        self.handle = None
        # One writer per attempt: a stale file (a test database's reused ids) is replaced.
        self.path.unlink(missing_ok=True)

    def append(self, data: bytes):
        if self.handle is None:  # created on the first write: no file means nothing was logged
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.path, "wb")  # noqa: SIM115 — open while the step runs, closed by close()
        self.handle.write(data)
        self.handle.flush()

    def close(self):
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class ChunkedLog:
    """A log in an object store: each append is a new chunk object at the log's offset.
    The caller buffers (`buffered`), so that a chunk holds more than one line."""

    buffered = True

    def __init__(self, name: str):
        self.directory = _chunk_dir(name)
        self.offset = 0
        for chunk in _chunks(self.directory):  # a stale log (a test database's reused ids)
            storage().delete(chunk.name)

    def append(self, data: bytes):
        put(f"{self.directory}/{self.offset:0{OFFSET_DIGITS}d}", ContentFile(data))
        self.offset += len(data)

    def close(self):
        pass


def open_log(name: str) -> FileLog | ChunkedLog:
    """A writer for a new log at `name`, replacing any log there."""
    return FileLog(name) if is_local() else ChunkedLog(name)


def log_size(name: str) -> int | None:
    """The log's size in bytes, or None when there is none."""
    if is_local():
        try:
            return resolve(name).stat().st_size
        except FileNotFoundError:
            return None
    chunks = _chunks(_chunk_dir(name))
    return _sized(chunks)[-1].end if chunks else None


def log_tail(name: str, lines: int = TAIL_LINES, max_bytes: int = TAIL_BYTES) -> str:
    """The last `lines` lines of a log (at most `max_bytes` of it), or "" when there is none."""
    if is_local():
        try:
            with open(resolve(name), "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - max_bytes))
                data = handle.read()
        except FileNotFoundError:
            return ""
    else:
        chunks = _chunks(_chunk_dir(name))
        if not chunks:
            return ""
        chunks = _sized(chunks)
        size = chunks[-1].end
        start = max(0, size - max_bytes)
        data = b"".join(_read(chunk.name) for chunk in chunks if chunk.end > start)[-max_bytes:]
    text = data.decode("utf-8", errors="replace")
    kept = text.splitlines(keepends=True)
    if size > max_bytes and kept:
        kept = kept[1:]  # the first line was cut in the middle
    return "".join(kept[-lines:])


def read_log(name: str) -> Iterator[bytes] | None:
    """The whole log as blocks of bytes in order (for a download), or None when there is none."""
    if is_local():
        try:
            handle = open(resolve(name), "rb")  # noqa: SIM115 — closed by _blocks when the download ends
        except FileNotFoundError:
            return None
        return _blocks(handle)
    chunks = _chunks(_chunk_dir(name))
    if not chunks:
        return None
    return (_read(chunk.name) for chunk in chunks)


def _blocks(handle) -> Iterator[bytes]:
    with handle:
        while block := handle.read(READ_BYTES):
            yield block


@dataclass(slots=True)
class _Chunk:
    name: str
    offset: int
    end: int = 0


def _chunk_dir(name: str) -> str:
    return check_name(name) + ".d"


def _chunks(directory: str) -> list[_Chunk]:
    """The chunks of a log in order, from one listing (one request per 1,000 chunks)."""
    _dirs, files = storage().listdir(directory)
    chunks = [_Chunk(posixpath.join(directory, file), int(file)) for file in files if file.isdigit()]
    return sorted(chunks, key=lambda chunk: chunk.offset)


def _sized(chunks: list[_Chunk]) -> list[_Chunk]:
    """Each chunk's end offset: the next chunk's name, and for the last its size (one HEAD)."""
    for chunk, following in itertools.pairwise(chunks):
        chunk.end = following.offset
    chunks[-1].end = chunks[-1].offset + storage().size(chunks[-1].name)
    return chunks


def _read(name: str) -> bytes:
    with storage().open(name, "rb") as handle:
        return handle.read()
