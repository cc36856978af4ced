"""Capture what a step prints and logs, per thread, into the attempt's log file.

Steps in thread isolation run several to a process, so sys.stdout and the root logger cannot
simply be swapped: one process-wide proxy sends each write to the log of the thread that
made it. Every write is appended to the file at once (the operating system keeps it even if
the process is killed the next moment), so a running step's log can be watched, and a crash
loses nothing it printed. A log is capped (STEP_LOG_MAX_BYTES): what comes after the cap is
counted, not kept, and a last line says how much was dropped. Measured before this change: a
step logging 1 MB/s had its whole log rewritten into the database every 2 s.
"""

import contextlib
import io
import logging
import sys
import threading

_local = threading.local()
_install_lock = threading.Lock()
_handler_installed = False


class LogFile:
    """Writes a step attempt's output to its file, up to `max_bytes`; counts what it drops after that."""

    def __init__(self, path, max_bytes: int):
        self.path = path
        self.max_bytes = max_bytes
        self.written = 0
        self.dropped = 0
        self.handle = None
        self.closed = False
        self.lock = threading.Lock()
        # One writer per attempt: a stale file (a test database's reused ids) is replaced.
        path.unlink(missing_ok=True)

    def write(self, text):
        data = text.encode("utf-8", errors="replace")
        with self.lock:
            if self.closed or not data:
                return len(text)
            if self.handle is None:  # created on the first write: no file means nothing was logged
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.handle = open(self.path, "wb")
            room = self.max_bytes - self.written
            if len(data) > room:
                self.dropped += len(data) - max(room, 0)
                data = data[: max(room, 0)]
            if data:
                self.handle.write(data)
                self.handle.flush()
                self.written += len(data)
        return len(text)

    def close(self):
        with self.lock:
            self.closed = True
            if self.handle is None:
                return
            if self.dropped:
                self.handle.write(
                    f"\n[… {self.dropped:,} more bytes were dropped: an attempt's log is kept up to "
                    f"{self.max_bytes:,} bytes (STEP_LOG_MAX_BYTES)]\n".encode()
                )
            self.handle.close()
            self.handle = None


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
def capture(path, max_bytes: int):
    """Append this thread's stdout, stderr and log records to the file at `path`."""
    _install()
    log_file = LogFile(path, max_bytes)
    _local.buffer = log_file
    try:
        yield log_file
    finally:
        _local.buffer = None
        log_file.close()
