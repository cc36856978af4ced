"""The registry of pipelines: every pipeline a module defines is added here (`pipeline()`
does it), checked as a whole (duplicate names, sub-pipelines naming unknown pipelines or each
other in a loop) and discovered from a package at start-up, each module once, a module that
fails to import leaving the others alone. Like Django admin's site registry.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
import typing
from pathlib import Path

import networkx as nx

from app.pipelines.problems import ImportProblem

if typing.TYPE_CHECKING:
    from app.pipelines.registry import Pipeline

log = logging.getLogger("app.pipelines.registry")


class Registry:
    """All pipelines defined by imported modules, like Django admin's site registry."""

    def __init__(self):
        self.defined: list[Pipeline] = []
        self.import_errors: dict[str, ImportProblem] = {}
        self._valid: dict[str, Pipeline] | None = None

    def add(self, pipe: Pipeline):
        """Collect a definition. The same file imported again under another module name (a
        test importing `pipelines.x` where the site loaded it as another package's module)
        defines nothing new: the first definition stays."""
        if pipe.module_file and any(
            other.name == pipe.name and other.module != pipe.module
            and Path(other.module_file).resolve() == Path(pipe.module_file).resolve()
            for other in self.defined if other.module_file
        ):
            return
        self.defined.append(pipe)
        self._valid = None

    def problems(self) -> dict[str, list[str]]:
        """Definition problems by pipeline name (duplicates included)."""
        found = {}
        seen = {}
        for pipe in self.defined:
            if pipe.name in seen:
                found.setdefault(pipe.name, []).append(
                    f"the name is defined twice (in {seen[pipe.name]} and {pipe.module})"
                )
                continue
            seen[pipe.name] = pipe.module
            issues = pipe.validate()
            if issues:
                found[pipe.name] = issues
        self._child_problems(found, seen)
        return found

    def _child_problems(self, found: dict, seen: dict):
        """Sub-pipeline steps naming a pipeline that is not defined, or pipelines that would
        run themselves as a child (directly or not): both are problems of the parent."""
        children = {
            pipe.name: {step.name: step.child for step in pipe.steps.values() if step.child}
            for pipe in self.defined if seen.get(pipe.name) == pipe.module
        }
        for parent, steps in children.items():
            for step, child in steps.items():
                if child not in seen:
                    found.setdefault(parent, []).append(
                        f"step {step!r} runs pipeline {child!r} as a child run, but no pipeline of that name is defined"
                    )
        graph = nx.DiGraph((parent, child) for parent, steps in children.items() for child in steps.values())
        for cycle in nx.simple_cycles(graph):
            for parent in cycle:
                found.setdefault(parent, []).append(
                    "its sub-pipelines run it again: " + " → ".join(cycle + [cycle[0]])
                )

    def pipelines(self) -> dict[str, Pipeline]:
        """The usable pipelines, by name: a pipeline with any problem is left out whole."""
        if self._valid is None:
            bad = self.problems()
            valid = {}
            for pipe in self.defined:
                if pipe.name not in bad and pipe.name not in valid:
                    valid[pipe.name] = pipe
            self._valid = dict(sorted(valid.items()))
        return self._valid

    def get(self, name) -> Pipeline | None:
        return self.pipelines().get(name)

    def why_unavailable(self, name: str, module: str = "") -> str:
        """Why no usable pipeline `name` is loaded, as the operator should read it; `module`
        is where it was defined when a run of it started (from the run's snapshot)."""
        problems = self.problems().get(name)
        if problems:
            return "; ".join(problems)
        if module in self.import_errors:
            return f"its module {module} failed to import ({self.import_errors[module].summary})"
        if self.import_errors:
            failed = ", ".join(p.module for p in self.import_errors.values())
            return f"no module that loaded defines it (these failed to import: {failed})"
        return "no module in the pipelines package defines it"

    def discover(self, package_name: str):
        """Import every module of `package_name` once; remember each import failure by module.

        A module that fails leaves the others alone: its pipelines are missing, and the
        failure (file, line, error) is in `import_errors`. Modules may import each other:
        one that a sibling imported already is not run a second time."""
        self.defined.clear()
        self.import_errors.clear()
        self._valid = None
        # A second discovery (tests, autoreload) runs every module anew, each once.
        for name in [m for m in sys.modules if m == package_name or m.startswith(package_name + ".")]:
            del sys.modules[name]
        try:
            package = importlib.import_module(package_name)
        except Exception as exc:
            self.import_errors[package_name] = ImportProblem.of(package_name, exc)
            return
        for info in pkgutil.iter_modules(package.__path__, package_name + "."):
            if info.name in sys.modules:
                continue  # imported by a sibling already
            try:
                importlib.import_module(info.name)
            except Exception as exc:
                sys.modules.pop(info.name, None)
                self.import_errors[info.name] = ImportProblem.of(info.name, exc)
        for problem in self.import_errors.values():
            log.warning("pipeline module %s is not loaded: %s", problem.module, problem.summary)
        for name, problems in self.problems().items():
            log.warning("pipeline %r is not available: %s", name, "; ".join(problems))
