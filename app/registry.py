"""The pipeline API that data scientists write against.

    from app.registry import pipeline, Params, param

    class TrainParams(Params):
        n_estimators: int = param(100, ge=1, le=2000, help="Trees in the forest")

    train = pipeline("train_classifier", params=TrainParams, description="…")

    @train.step()
    def load(ctx): ...

    @train.step(after=[load])
    def fit(ctx, load): ...          # upstream outputs arrive by parameter name

This module has no Django imports: pipeline modules import only this and their own
libraries. Definitions are collected here and checked by `validate()`; the Django side
(app.apps, app.checks) discovers `pipelines/` at start-up and only keeps valid pipelines.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import inspect
import json
import pkgutil
import re
import sys
import textwrap
import traceback
import types
import typing
from dataclasses import dataclass, field

import networkx as nx

from app import graph as dag

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_MISSING = object()


class DefinitionError(Exception):
    """A problem in a pipeline definition, reported as a system-check error."""


# --- parameters -------------------------------------------------------------------------


@dataclass
class ParamSpec:
    """One declared parameter: its type, default and rules, as the form and CLI see it."""

    name: str
    type: type
    default: typing.Any = _MISSING
    ge: float | None = None
    le: float | None = None
    choices: tuple | None = None
    help: str = ""
    optional: bool = False

    @property
    def required(self):
        return self.default is _MISSING

    @property
    def type_name(self):
        if self.choices is not None:
            return "choice"
        return {int: "int", float: "float", bool: "bool", str: "str", datetime.date: "date"}[self.type]

    def describe_default(self):
        return "(required)" if self.required else repr(self.default)

    def coerce(self, value):
        """Turn `value` (a Python value or a string from a form or the CLI) into this
        parameter's type, or raise ValueError with a message a user can act on."""
        if value is None or value == "":
            if self.optional:
                return None
            raise ValueError("a value is required")
        result = _coerce_type(self.type, value)
        if self.choices is not None and result not in self.choices:
            options = ", ".join(repr(c) for c in self.choices)
            raise ValueError(f"{value!r} is not one of {options}")
        if self.ge is not None and result < self.ge:
            raise ValueError(f"{result!r} is below the minimum {self.ge!r}")
        if self.le is not None and result > self.le:
            raise ValueError(f"{result!r} is above the maximum {self.le!r}")
        return result

    def to_json(self, value):
        return value.isoformat() if isinstance(value, datetime.date) else value

    def as_dict(self):
        return {
            "name": self.name,
            "type": self.type_name,
            "default": None if self.required else self.to_json(self.default),
            "required": self.required,
            "optional": self.optional,
            "ge": None if self.ge is None else self.to_json(self.ge),
            "le": None if self.le is None else self.to_json(self.le),
            "choices": list(self.choices) if self.choices is not None else None,
            "help": self.help,
        }


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce_type(kind, value):
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{value!r} is not a boolean (use true or false)")
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{value!r} is not a whole number")
        try:
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a whole number") from None
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not a finite number")
        return number
    if kind is datetime.date:
        if isinstance(value, datetime.date):
            return value
        try:
            return datetime.date.fromisoformat(str(value).strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a date (use YYYY-MM-DD)") from None
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    return value


@dataclass
class _ParamDefault:
    default: typing.Any
    ge: float | None
    le: float | None
    help: str
    choices: tuple | None


def param(default=_MISSING, *, ge=None, le=None, help="", choices=None):
    """Declare a parameter's default, bounds (`ge` ≤ value ≤ `le`), choices and help text.

    Leave out `default` for a required parameter. Use inside a `Params` subclass:
    `n_estimators: int = param(100, ge=1, le=2000, help="Trees in the forest")`.
    """
    return _ParamDefault(default, ge, le, help, tuple(choices) if choices is not None else None)


class Params:
    """Base class for a pipeline's typed parameters. Subclass it and annotate fields with
    int, float, bool, str, datetime.date, typing.Literal[...] or Optional[...] of those."""

    def __init__(self, **values):
        for name, value in values.items():
            setattr(self, name, value)

    def __repr__(self):
        items = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({items})"

    def as_dict(self):
        return dict(vars(self))


_SIMPLE_TYPES = (int, float, bool, str, datetime.date)


def param_specs(params_class) -> list[ParamSpec]:
    """Read the declared parameters of a Params subclass; raise DefinitionError on a bad one."""
    if params_class is None:
        return []
    if not (isinstance(params_class, type) and issubclass(params_class, Params)):
        raise DefinitionError(f"params={params_class!r} is not a subclass of app.registry.Params")
    try:
        hints = typing.get_type_hints(params_class)
    except Exception as exc:
        raise DefinitionError(f"cannot read the parameter annotations: {exc}") from None
    specs = []
    for name, hint in hints.items():
        if name.startswith("_"):
            continue
        specs.append(_spec_from_hint(params_class, name, hint))
    return specs


def _spec_from_hint(params_class, name, hint):
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1 or len(typing.get_args(hint)) != 2:
            raise DefinitionError(f"parameter {name!r}: only Optional[X] unions are supported")
        optional, hint, origin = True, args[0], typing.get_origin(args[0])
    choices = None
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        kinds = {type(c) for c in choices}
        if len(kinds) != 1 or next(iter(kinds)) not in _SIMPLE_TYPES:
            raise DefinitionError(f"parameter {name!r}: Literal choices must all be of one simple type")
        hint = next(iter(kinds))
    if hint not in _SIMPLE_TYPES:
        raise DefinitionError(
            f"parameter {name!r}: type {hint!r} is not supported (use int, float, bool, str, date, Literal or Optional)"
        )
    raw = params_class.__dict__.get(name, _MISSING)
    declared = raw if isinstance(raw, _ParamDefault) else _ParamDefault(raw, None, None, "", None)
    if declared.choices is not None:
        if choices is not None:
            raise DefinitionError(f"parameter {name!r}: give choices either by Literal or by choices=, not both")
        choices = declared.choices
    if (declared.ge is not None or declared.le is not None) and hint not in (int, float, datetime.date):
        raise DefinitionError(f"parameter {name!r}: bounds (ge/le) only apply to numbers and dates")
    spec = ParamSpec(name, hint, declared.default, declared.ge, declared.le, choices, declared.help, optional)
    try:
        # Bounds are values of the parameter's own type (a date bound may be written as text).
        spec.ge = None if spec.ge is None else _coerce_type(hint, spec.ge)
        spec.le = None if spec.le is None else _coerce_type(hint, spec.le)
    except ValueError as exc:
        raise DefinitionError(f"parameter {name!r}: a bound is invalid: {exc}") from None
    if spec.default is None and optional:
        return spec
    if spec.default is not _MISSING:
        try:
            # Keep the coerced value: a default written as "no" for a bool must become False.
            spec.default = spec.coerce(spec.default)
        except ValueError as exc:
            raise DefinitionError(f"parameter {name!r}: its default is invalid: {exc}") from None
    return spec


# --- pipelines and steps ----------------------------------------------------------------


@dataclass
class Step:
    """A step of a pipeline: a function called with the run context and upstream outputs."""

    pipeline: Pipeline
    name: str
    func: typing.Callable
    after: list[str]
    inputs: list[str]
    retries: int = 0

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)

    @property
    def doc(self):
        return inspect.cleandoc(self.func.__doc__ or "")

    @property
    def source(self):
        try:
            return textwrap.dedent(inspect.getsource(self.func))
        except (OSError, TypeError):
            return ""


@dataclass
class Pipeline:
    """A named DAG of steps with typed parameters. Create with `pipeline()`."""

    name: str
    description: str = ""
    params_class: type | None = None
    module: str = ""
    steps: dict[str, Step] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    _snapshot: dict | None = field(default=None, repr=False, compare=False)
    _snapshot_steps: int = field(default=0, repr=False, compare=False)

    def step(self, after=(), *, name=None, retries=0):
        """Decorator adding a step. `after` lists the steps (functions or names) it waits for;
        the function's parameters after `ctx` name the upstream steps whose outputs it gets."""

        def decorate(func):
            step_name = name or func.__name__
            upstream = []
            for dep in after:
                if isinstance(dep, Step):
                    if dep.pipeline is not self:
                        self.problems.append(
                            f"step {step_name!r}: depends on {dep.name!r} of another pipeline ({dep.pipeline.name!r})"
                        )
                    upstream.append(dep.name)
                elif isinstance(dep, str):
                    upstream.append(dep)
                else:
                    self.problems.append(f"step {step_name!r}: after= holds {dep!r}, not a step or a step name")
            signature = inspect.signature(func)
            names = list(signature.parameters)
            if not names:
                self.problems.append(f"step {step_name!r}: its function must take the run context as first argument")
            if step_name in self.steps:
                self.problems.append(f"step {step_name!r} is defined twice")
            if not isinstance(retries, int) or retries < 0:
                self.problems.append(f"step {step_name!r}: retries must be a whole number ≥ 0")
            step = Step(self, step_name, func, upstream, names[1:], retries)
            self.steps.setdefault(step_name, step)
            return step

        return decorate

    @property
    def param_specs(self):
        return param_specs(self.params_class)

    def validate(self):
        """Return the list of problems with this definition (empty when it is usable)."""
        problems = list(self.problems)
        if not NAME_RE.match(self.name):
            problems.append("its name may only use letters, digits, '_', '-' and '.'")
        try:
            self.param_specs
        except DefinitionError as exc:
            problems.append(str(exc))
        if not self.steps:
            problems.append("it has no steps")
        for step in self.steps.values():
            for dep in step.after:
                if dep not in self.steps:
                    problems.append(f"step {step.name!r}: depends on unknown step {dep!r}")
        if problems:
            return problems
        graph = self.graph()
        cycle = dag.find_cycle(graph)
        if cycle:
            problems.append("its steps form a cycle: " + " → ".join(cycle + [cycle[0]]))
            return problems
        for step in self.steps.values():
            upstream = nx.ancestors(graph, step.name)
            for wanted in step.inputs:
                if wanted not in upstream:
                    problems.append(
                        f"step {step.name!r}: asks for input {wanted!r}, which is not a step upstream of it"
                    )
        return problems

    def graph(self) -> nx.DiGraph:
        return dag.build(self.steps.keys(), ((dep, s.name) for s in self.steps.values() for dep in s.after))

    def snapshot(self) -> dict:
        """The JSON description of this DAG kept with every run: steps in topological order,
        edges, docstrings, sources and a hash that changes whenever any of them changes.
        Computed once per definition (reading sources is slow; the code cannot change
        without the module being imported again, which makes a new Pipeline)."""
        if self._snapshot is None or self._snapshot_steps != len(self.steps):
            self._snapshot = self._build_snapshot()
            self._snapshot_steps = len(self.steps)
        return self._snapshot

    def _build_snapshot(self) -> dict:
        graph = self.graph()
        order = dag.topological_order(graph)
        steps = [
            {
                "name": s.name,
                "doc": s.doc,
                "source": s.source,
                "after": list(s.after),
                "inputs": list(s.inputs),
                "retries": s.retries,
            }
            for s in (self.steps[name] for name in order)
        ]
        body = {
            "pipeline": self.name,
            "description": self.description,
            "steps": steps,
            "edges": [list(e) for e in graph.edges],
            "params": [spec.as_dict() for spec in self.param_specs],
        }
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        body["source_hash"] = digest
        return body

    def parse_params(self, values: dict) -> dict:
        """Validate raw values (strings from a form or CLI, or Python values) against the
        declaration. Returns the full parameter dict (defaults filled in, JSON-ready) or
        raises ParamError listing every problem."""
        specs = {spec.name: spec for spec in self.param_specs}
        errors = {}
        unknown = sorted(set(values) - set(specs))
        for name in unknown:
            known = ", ".join(sorted(specs)) or "none"
            errors[name] = f"unknown parameter (this pipeline takes: {known})"
        result = {}
        for name, spec in specs.items():
            if name in values:
                try:
                    result[name] = spec.to_json(spec.coerce(values[name]))
                except ValueError as exc:
                    errors[name] = str(exc)
            elif spec.required:
                errors[name] = "a value is required"
            else:
                result[name] = spec.to_json(spec.default)
        if errors:
            raise ParamError(errors)
        return result

    def make_params(self, values: dict):
        """The Params object a step sees as `ctx.params`, from a stored parameter dict."""
        specs = self.param_specs
        kwargs = {}
        for spec in specs:
            value = values.get(spec.name)
            if spec.type is datetime.date and isinstance(value, str):
                value = datetime.date.fromisoformat(value)
            kwargs[spec.name] = value
        return (self.params_class or Params)(**kwargs)


class ParamError(ValueError):
    """Raised by Pipeline.parse_params; `errors` maps parameter name to message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


# --- the registry -----------------------------------------------------------------------


class Registry:
    """All pipelines defined by imported modules, like Django admin's site registry."""

    def __init__(self):
        self.defined: list[Pipeline] = []
        self.import_errors: dict[str, str] = {}
        self._valid: dict[str, Pipeline] | None = None

    def add(self, pipe: Pipeline):
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
        return found

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

    def discover(self, package_name: str):
        """Import every module of `package_name`; remember each import failure by module."""
        self.defined.clear()
        self.import_errors.clear()
        self._valid = None
        try:
            package = importlib.import_module(package_name)
        except Exception:
            self.import_errors[package_name] = traceback.format_exc(limit=-3)
            return
        for info in pkgutil.iter_modules(package.__path__, package_name + "."):
            try:
                # A second discovery (tests, autoreload) must run the module again so its
                # pipelines register anew.
                if info.name in sys.modules:
                    importlib.reload(sys.modules[info.name])
                else:
                    importlib.import_module(info.name)
            except Exception:
                self.import_errors[info.name] = traceback.format_exc(limit=-3)


registry = Registry()


def pipeline(name: str, *, params=None, description: str = "") -> Pipeline:
    """Define a pipeline. Add steps with the `@p.step(after=[...])` decorator."""
    pipe = Pipeline(name=name, description=inspect.cleandoc(description), params_class=params)
    frame = inspect.currentframe().f_back
    pipe.module = frame.f_globals.get("__name__", "") if frame else ""
    registry.add(pipe)
    return pipe
