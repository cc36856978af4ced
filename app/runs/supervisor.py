"""Run one step attempt in a child process and watch it, as Airflow's task supervisor and
Celery's prefork pool do.

Children are forked by a fork server (multiprocessing's "forkserver"): a single-threaded
process started once per worker, which has imported Django and every pipeline module
(app.runs.preload) and never opened the database. Forking the worker itself would be cheaper
by a few milliseconds but unsafe: it has threads that hold locks at any moment, and SQLite's
per-process lock table does not survive a fork (a child then waits forever for "database is
locked"). Every child starts from the same loaded code.

Whatever a step does to its process — segfault, `os.kill(os.getpid(), 9)`, running out of
memory, `os._exit`, holding the GIL for minutes — happens to the child. The worker's thread
waits for it; the worker's heartbeat thread keeps marking the step alive meanwhile (it is not
starved: the GIL it needs is the worker's, not the child's); a timeout is enforced from here,
SIGTERM then SIGKILL after a grace period.

Starting a child costs ~16 ms here (a fork of a 130 MB interpreter in this VM): more than the
whole per-step overhead of the engine (~3 ms).
So a child that answered is kept for the next attempt of any step of this worker, like
Celery's prefork pool, until it has run STEP_PROCESS_REUSE attempts or grown past
STEP_PROCESS_MAX_MEMORY_MB; a child that crashed, timed out or failed is never reused.
STEP_PROCESS_REUSE=1 gives every attempt a fresh process.

A child watches a pipe from its worker and ends itself when the worker is gone, so a step
does not go on after the worker accountable for it died (unless it holds the GIL at that moment: then it ends when it lets go; what it records
then is refused, since the watchdog has moved the step run on to another attempt).

`run_in_child` knows nothing about steps: it runs a function in a child and says what
happened, as an `Outcome`. The engine decides what that means for the step run.
"""

from __future__ import annotations

import atexit
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
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_context.set_forkserver_preload(["app.runs.preload"])

# A worker shutting down (SIGTERM, app.management.commands.run_huey): `stopping` — take no
# new step; `hand_over` — the drain time is up: stop the running children now, so their
# steps go back on the queue for another worker instead of waiting for the watchdog.
stopping = threading.Event()
hand_over = threading.Event()


@dataclass
class Outcome:
    """What became of a function run in a child: its (picklable) `value` when it returned,
    else `error`, a sentence saying why it did not (a signal, an exit code, a timeout)."""

    value: Any = None
    error: str = ""
    pid: int = 0
    handed_over: bool = False  # stopped because the worker shuts down, not for the step

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


def run_in_child(
    target: Callable, args: tuple, *, timeout: float | None, grace: float = 5.0, reuse: int = 1,
    max_memory_mb: float | None = None,
) -> Outcome:
    """Call `target(*args)` in a child process and wait for it: at most `timeout` seconds,
    then SIGTERM, then SIGKILL after `grace`. `target` is a module-level function (it is
    pickled by name); it returns a picklable value or raises.

    A child that answered is kept for the next call until it has run `reuse` calls or its
    memory passes `max_memory_mb`; one that crashed, timed out or raised is never reused."""
    child = _pool.take()
    try:
        child.requests.send((target, args))
    except (BrokenPipeError, EOFError, OSError):  # it died while idle: try a fresh one
        child.retire()
        child = _pool.take()
        child.requests.send((target, args))
    outcome = child.watch(timeout, grace)
    child.used += 1
    if outcome.finished and child.used < reuse and not child.over(max_memory_mb):
        _pool.give_back(child)
    else:
        child.retire(wait=not outcome.finished)
    return outcome


class _Child:
    """One child process and the pipes to it."""

    def __init__(self):
        multiprocessing.active_children()  # reaps children retired earlier
        requests_r, self.requests = _context.Pipe(duplex=False)
        self.results, results_w = _context.Pipe(duplex=False)
        lifeline, self.keep_alive = _context.Pipe(duplex=False)
        self.process = _context.Process(target=_child_loop, args=(requests_r, results_w, lifeline), daemon=False)
        self.process.start()
        for end in (requests_r, results_w, lifeline):
            end.close()
        self.used = 0

    def watch(self, timeout, grace) -> Outcome:
        process = self.process
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            if self.results.poll(wait):
                try:
                    message = self.results.recv()
                except (EOFError, OSError):
                    break  # the child is gone without a word
                if "error" in message:
                    return Outcome(error=message["error"], pid=process.pid)
                return Outcome(value=message["value"], pid=process.pid)
            if deadline is not None and time.monotonic() >= deadline:
                _stop(process, grace)
                return Outcome(error=f"timed out after {timeout:g} s: the step's process was stopped", pid=process.pid)
            if hand_over.is_set():
                _stop(process, grace)
                return Outcome(error="its worker shut down", pid=process.pid, handed_over=True)
        process.join(grace)
        if process.exitcode is None:
            _stop(process, grace)
        return Outcome(error=describe_exit(process.exitcode), pid=process.pid)

    def over(self, max_memory_mb) -> bool:
        """Whether the child's resident memory is above `max_memory_mb` (a step that
        allocated a lot leaves its process big: Python rarely gives memory back)."""
        if not max_memory_mb:
            return False
        try:  # statm: one short line (its second field is the RSS in pages), read after every attempt
            with open(f"/proc/{self.process.pid}/statm", "rb") as statm:
                return int(statm.read().split()[1]) * _PAGE_BYTES / 2**20 > max_memory_mb
        except (OSError, ValueError, IndexError):
            return True  # cannot tell: do not keep it

    def retire(self, wait=False):
        """Close the pipes: the child ends on its own (idle, it sees the end of its requests;
        running, its lifeline). `wait`: reap it now, as after a crash or timeout."""
        for end in (self.requests, self.results, self.keep_alive):
            if not end.closed:
                end.close()
        if wait:
            self.process.join(1.0)


class _Pool:
    """Idle children of this worker, shared by its threads (one child serves one thread at a time)."""

    def __init__(self):
        self.idle: list[_Child] = []
        self.started: list[_Child] = []
        self.lock = threading.Lock()

    def take(self) -> _Child:
        with self.lock:
            while self.idle:
                child = self.idle.pop()
                if child.process.is_alive():
                    return child
                child.retire()
            self.started = [c for c in self.started if c.process.is_alive()]
            child = _Child()
            self.started.append(child)
            return child

    def give_back(self, child: _Child):
        with self.lock:
            self.idle.append(child)

    def close(self):
        """At exit: end every child, busy or idle. Without this, multiprocessing's own exit
        handler would wait forever for idle children (and for a running step to finish)."""
        for child in self.started:
            child.retire()
            if child.process.is_alive():
                child.process.terminate()


_pool = _Pool()
# Registered after multiprocessing's exit handler, so it runs before it.
atexit.register(_pool.close)


def _child_loop(requests, results, lifeline):
    """The child's side: watch the worker; run each request and report, until told to stop."""
    threading.Thread(target=_end_with_worker, args=(lifeline,), name="worker-lifeline", daemon=True).start()
    while True:
        try:
            target, args = requests.recv()
        except (EOFError, OSError):
            return  # retired, or the worker is gone
        try:
            message = {"value": target(*args)}
        except BaseException as exc:  # noqa: BLE001 — everything is reported, nothing escapes
            message = {"error": "the step's process failed outside the step's code: " + describe_exception(exc)}
        results.send(message)
        if "error" in message:
            return  # never reused after a failure of its own


def _end_with_worker(lifeline):
    """The worker holds the other end of `lifeline` while this child lives: end of file means
    the worker died, or retired this child."""
    try:
        lifeline.recv_bytes()
    except (EOFError, OSError):
        pass
    os._exit(70)


def _stop(process, grace: float):
    """SIGTERM, then SIGKILL after `grace` seconds."""
    process.terminate()
    process.join(grace)
    if process.exitcode is None:
        process.kill()
        process.join()
