"""Capture what a step prints and logs, per thread.

Worker threads run several steps at once, so sys.stdout and the root logger cannot simply be
swapped: one process-wide proxy sends each write to the buffer of the thread that made it.
"""

import contextlib
import io
import logging
import sys
import threading

_local = threading.local()
_install_lock = threading.Lock()
_installed = False


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
    global _installed
    with _install_lock:
        if _installed:
            return
        sys.stdout = _ThreadStream(sys.stdout)
        sys.stderr = _ThreadStream(sys.stderr)
        handler = _ThreadHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        _installed = True


@contextlib.contextmanager
def capture():
    """Collect this thread's stdout, stderr and log records into a StringIO."""
    _install()
    buffer = io.StringIO()
    _local.buffer = buffer
    try:
        yield buffer
    finally:
        _local.buffer = None
