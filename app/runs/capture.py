"""Capture what a step prints and logs, per thread.

Worker threads run several steps at once, so sys.stdout and the root logger cannot simply be
swapped: one process-wide proxy sends each write to the buffer of the thread that made it.
A buffer can hand its text to a callback every few seconds, so a long step's log can be
watched while it runs.
"""

import contextlib
import io
import logging
import sys
import threading
import time

_local = threading.local()
_install_lock = threading.Lock()
_handler_installed = False


class LiveBuffer(io.StringIO):
    """A StringIO that calls `on_flush(text so far)` at most every `interval` seconds."""

    def __init__(self, on_flush=None, interval=2.0):
        super().__init__()
        self.on_flush = on_flush
        self.interval = interval
        self.last_flush = time.monotonic()
        self.flushing = False

    def write(self, text):
        written = super().write(text)
        now = time.monotonic()
        if self.on_flush and not self.flushing and now - self.last_flush >= self.interval:
            # `flushing` stops a log record emitted while saving from recursing into here.
            self.flushing, self.last_flush = True, now
            try:
                self.on_flush(self.getvalue())
            finally:
                self.flushing = False
        return written


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
def capture(on_flush=None, interval=2.0):
    """Collect this thread's stdout, stderr and log records into a LiveBuffer."""
    _install()
    buffer = LiveBuffer(on_flush, interval)
    _local.buffer = buffer
    try:
        yield buffer
    finally:
        _local.buffer = None
