"""What went wrong loading a pipeline module, as an operator needs to read it: the module,
its file and line, the error, and the traceback from the module's own code on."""

from __future__ import annotations

import importlib.util
import os
import traceback
from dataclasses import dataclass


@dataclass
class ImportProblem:
    """A pipeline module that failed to import: where and why."""

    module: str
    error: str  # "Type: message", one line
    file: str = ""  # the module's own file, as a path relative to the project when it can be
    line: int | None = None  # the line of that file where the failure happened
    traceback: str = ""  # for operators only: it may hold server paths and data

    @classmethod
    def of(cls, module: str, exc: BaseException) -> ImportProblem:
        try:
            message = str(exc)
        except Exception:  # noqa: BLE001
            message = "(its message could not be read)"
        error = f"{type(exc).__name__}: {message}".splitlines()[0][:300] if message else type(exc).__name__
        file, line = "", None
        frames = traceback.extract_tb(exc.__traceback__)
        try:
            origin = getattr(importlib.util.find_spec(module), "origin", None) or ""
        except (ImportError, ValueError):
            origin = ""
        first = next((i for i, frame in enumerate(frames) if frame.filename == origin), 0)
        for frame in frames:
            if origin and frame.filename == origin:
                file, line = frame.filename, frame.lineno
        if isinstance(exc, SyntaxError) and exc.filename:
            file, line = exc.filename, exc.lineno
        if not file and origin:
            file = origin
        # From the module's own code on: importlib's frames say nothing to whoever fixes it.
        trace = "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames[first:]))
        trace += "".join(traceback.format_exception_only(type(exc), exc))
        return cls(module, error, relative_path(file), line, trace)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.file and self.line else self.file or self.module

    @property
    def summary(self) -> str:
        return f"{self.where}: {self.error}"


def relative_path(path: str) -> str:
    """`path` relative to the working directory (the project) when it lies inside it."""
    try:
        return os.path.relpath(path) if path and not os.path.relpath(path).startswith("..") else path
    except ValueError:
        return path
