"""Capture what a step prints and logs, per thread, into the attempt's log file.

Steps in thread isolation run several to a process, so sys.stdout and the root logger cannot
simply be swapped: one process-wide proxy sends each write to the log of the thread that
made it. Every write is appended to the file at once (the operating system keeps it even if
the process is killed the next moment), so a running step's log can be watched, and a crash
loses nothing it printed. In an object store, which has no append, the log is put in chunks
at least every second (app.artifacts.logs says why chunks): a crash loses at most the last
second. A log is capped (STEP_LOG_MAX_BYTES): what comes after the cap is
counted, not kept, and a last line says how much was dropped. Measured before this change: a
step logging 1 MB/s had its whole log rewritten into the database every 2 s.
"""

import contextlib
import io
import logging
import sys
import threading

from app import artifacts

log = logging.getLogger(__name__)
_local = threading.local()
_install_lock = threading.Lock()
_handler_installed = False


class LogFile:
    """Writes a step attempt's output to its log in the artifact store, up to `max_bytes`;
    counts what it drops after that. A store on disk gets every write at once; an object
    store (no append) gets a chunk at least every FLUSH_SECONDS or CHUNK_BYTES, put by the
    writing thread when the buffer is full and by a flusher thread otherwise."""

    def __init__(self, name: str, max_bytes: int):
        self.max_bytes = max_bytes
        self.written = 0
        self.dropped = 0
        self.closed = False
        self.lock = threading.Lock()
        self.sink = artifacts.open_log(name)
        self.pending = bytearray()
        self.flusher = None
        self.stop = threading.Event()

    def write(self, text):
        data = text.encode("utf-8", errors="replace")
        with self.lock:
            if self.closed or not data:
                return len(text)
            room = self.max_bytes - self.written
            if len(data) > room:
                self.dropped += len(data) - max(room, 0)
                data = data[: max(room, 0)]
            if not data:
                return len(text)
            self.written += len(data)
            if not self.sink.buffered:
                self.sink.append(data)
                return len(text)
            self.pending += data
            if len(self.pending) >= artifacts.CHUNK_BYTES:
                try:
                    self._flush()
                except Exception:  # noqa: BLE001, S110 — the flusher thread tries again and says why
                    pass  # (no logging here: this thread's records come back to this log, under this lock)
            if self.flusher is None:
                self.flusher = threading.Thread(target=self._flush_every_second, name="log-flusher", daemon=True)
                self.flusher.start()
        return len(text)

    def _flush(self):
        """Put what is buffered (under the lock); on failure keep it for the next try."""
        if self.pending:
            self.sink.append(bytes(self.pending))
            self.pending.clear()

    def _flush_every_second(self):
        while not self.stop.wait(artifacts.FLUSH_SECONDS):
            try:
                with self.lock:
                    self._flush()
            except Exception as exc:  # noqa: BLE001 — the store is down: the step goes on, the log waits
                log.warning("a step log could not be stored yet (%s: %s); trying again", type(exc).__name__, exc)

    def close(self):
        self.stop.set()
        with self.lock:
            self.closed = True
            if self.dropped:
                note = (
                    f"\n[… {self.dropped:,} more bytes were dropped: an attempt's log is kept up to "
                    f"{self.max_bytes:,} bytes (STEP_LOG_MAX_BYTES)]\n"
                ).encode()
                if self.sink.buffered:
                    self.pending += note
                else:
                    self.sink.append(note)
            try:
                self._flush()
                lost = 0
            except Exception as exc:  # noqa: BLE001 — the step's outcome matters more than its log
                lost, error = len(self.pending), exc
            finally:
                self.sink.close()
        if lost:
            log.error("the last %d bytes of a step log could not be stored (%s: %s)", lost, type(error).__name__, error)


class _ThreadStream(io.TextIOBase):
    def __init__(self, real):
        self.real = real

    def write(self, text):
        buffer = getattr(_local, "buffer", None)
        if buffer is None:
            return self.real.write(text)
        return buffer.write(text)

    def flush(self):
        if getattr(_local, "buffer", None) is None:
            self.real.flush()

    def __getattr__(self, name):
        return getattr(self.real, name)


class _ThreadHandler(logging.Handler):
    def emit(self, record):
        buffer = getattr(_local, "buffer", None)
        if buffer is not None:
            buffer.write(self.format(record) + "\n")


def _install():
    # Checked on every capture, not once: something else (a test runner, redirect_stdout)
    # may have replaced sys.stdout since, and then it must be wrapped again.
    global _handler_installed
    with _install_lock:
        if not isinstance(sys.stdout, _ThreadStream):
            sys.stdout = _ThreadStream(sys.stdout)
        if not isinstance(sys.stderr, _ThreadStream):
            sys.stderr = _ThreadStream(sys.stderr)
        if not _handler_installed:
            handler = _ThreadHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logging.getLogger().addHandler(handler)
            _handler_installed = True


@contextlib.contextmanager
def capture(name: str, max_bytes: int):
    """Append this thread's stdout, stderr and log records to the log `name` in the store."""
    _install()
    log_file = LogFile(name, max_bytes)
    _local.buffer = log_file
    try:
        yield log_file
    finally:
        _local.buffer = None
        log_file.close()
