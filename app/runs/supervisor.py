"""Run one step attempt in a child process and watch it, as Airflow's task supervisor and
Celery's prefork pool do.

Children are forked by a fork server (multiprocessing's "forkserver"): a single-threaded
process started once per worker, which has imported Django and every pipeline module
(app.runs.preload) and never opened the database. Forking the worker itself would be cheaper
by a few milliseconds but unsafe: it has threads that hold locks at any moment, and SQLite's
per-process lock table does not survive a fork (a child then waits forever for "database is
locked"). Each child starts from the same loaded code, runs one attempt and exits.

Whatever a step does to its process — segfault, `os.kill(os.getpid(), 9)`, running out of
memory, `os._exit`, holding the GIL for minutes — happens to the child. The worker's thread
waits for it; the worker's heartbeat thread keeps marking the step alive meanwhile (it is not
starved: the GIL it needs is the worker's, not the child's); a timeout is enforced from here,
SIGTERM then SIGKILL after a grace period. A child watches a pipe from its worker and ends
itself when the worker is gone, so a step does not go on after the worker accountable for it
died (unless it holds the GIL at that moment: then it ends when it lets go; what it records
then is refused, since the watchdog has moved the step run on to another attempt).

`run_in_child` knows nothing about steps: it runs a function in a child and says what
happened, as an `Outcome`. The engine decides what that means for the step run.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing import forkserver
from typing import Any, Callable

log = logging.getLogger(__name__)

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(["app.runs.preload"])

@dataclass
class Outcome:
    """What became of a function run in a child: its (picklable) `value` when it returned,
    else `error`, a sentence saying why it did not (a signal, an exit code, a timeout)."""

    value: Any = None
    error: str = ""
    pid: int = 0

    @property
    def finished(self) -> bool:
        return not self.error


SIGNAL_HINTS = {
    signal.SIGKILL: "out of memory, or killed from outside?",
    signal.SIGSEGV: "a crash in native code",
    signal.SIGBUS: "a crash in native code",
    signal.SIGABRT: "aborted by native code",
    signal.SIGTERM: "terminated from outside",
}


def describe_exit(exitcode: int | None) -> str:
    """A child's exit code (negative: the signal that ended it) as the sentence an operator
    reads on the step page."""
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        hint = SIGNAL_HINTS.get(number)
        return f"the step's process was killed by signal {number} ({name}{' — ' + hint if hint else ''})"
    return f"the step's process exited with code {exitcode} before it recorded an outcome"


def describe_exception(exc: BaseException) -> str:
    """`Type: message`, even when the exception's `str()` itself raises."""
    try:
        text = str(exc)
    except BaseException as inner:  # noqa: BLE001
        text = f"(its message could not be read: {type(inner).__name__})"
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def start():
    """Start the fork server now (it imports Django and the pipelines: a second or two),
    instead of on the first step."""
    forkserver.ensure_running()


def run_in_child(target: Callable, args: tuple, *, timeout: float | None, grace: float = 5.0) -> Outcome:
    """Call `target(*args)` in a child process and wait for it: at most `timeout` seconds,
    then SIGTERM, then SIGKILL after `grace`. `target` is a module-level function (it is
    pickled by name); it returns a picklable value or raises."""
    multiprocessing.active_children()  # reaps children that already reported and exited
    receiver, sender = _context.Pipe(duplex=False)
    lifeline, keep_alive = _context.Pipe(duplex=False)
    process = _context.Process(target=_child_main, args=(target, args, sender, lifeline), daemon=False)
    process.start()
    sender.close()
    lifeline.close()
    try:
        return _watch(process, receiver, timeout, grace)
    finally:
        receiver.close()
        keep_alive.close()


def _child_main(target, args, sender, lifeline):
    """The child's side: watch the worker, run, report."""
    threading.Thread(target=_end_with_worker, args=(lifeline,), name="worker-lifeline", daemon=True).start()
    try:
        message = {"value": target(*args)}
    except BaseException as exc:  # noqa: BLE001 — everything is reported, nothing escapes
        message = {"error": "the step's process failed while recording its outcome: " + describe_exception(exc)}
    sender.send(message)
    sender.close()


def _end_with_worker(lifeline):
    """The worker holds the other end of `lifeline` while this child runs: end of file means
    the worker died (or has its answer already)."""
    try:
        lifeline.recv_bytes()
    except (EOFError, OSError):
        pass
    os._exit(70)


def _watch(process, receiver, timeout, grace) -> Outcome:
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
        if receiver.poll(wait):
            try:
                message = receiver.recv()
            except (EOFError, OSError):
                break  # the child is gone without a word
            # A child that reported is left to exit on its own (its memory takes ~10 ms to
            # unmap); the next run_in_child reaps it.
            if "error" in message:
                process.join(grace)
                return Outcome(error=message["error"], pid=process.pid)
            return Outcome(value=message["value"], pid=process.pid)
        if deadline is not None and time.monotonic() >= deadline:
            _stop(process, grace)
            return Outcome(error=f"timed out after {timeout:g} s: the step's process was stopped", pid=process.pid)
    process.join(grace)
    if process.exitcode is None:
        _stop(process, grace)
    return Outcome(error=describe_exit(process.exitcode), pid=process.pid)


def _stop(process, grace: float):
    """SIGTERM, then SIGKILL after `grace` seconds."""
    process.terminate()
    process.join(grace)
    if process.exitcode is None:
        process.kill()
        process.join()
