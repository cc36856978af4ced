"""Typed pipeline parameters: the declaration (`Params`, `param`) and how values are read.

Part of the pipeline API (import these from app.pipelines); no Django imports.
"""

from __future__ import annotations

import datetime
import types
import typing
from dataclasses import dataclass

_MISSING = object()
MAX_LENGTH = 1000  # the longest a text parameter may be unless it says otherwise


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
    max_length: int | None = None

    @property
    def required(self):
        return self.default is _MISSING

    @property
    def type_name(self):
        if self.choices is not None:
            return "choice"
        return {int: "int", float: "float", bool: "bool", str: "str", datetime.date: "date"}[self.type]

    def describe_default(self):
        return "(required)" if self.required else _show(self.default)

    def describe(self) -> str:
        """Type, default, bounds, choices and help in one line, as `list_pipelines` shows it."""
        parts = [self.type_name + (" or empty" if self.optional else "")]
        parts.append("required" if self.required else f"default {self.describe_default()}")
        if self.choices is not None:
            parts.append("one of " + ", ".join(_show(c) for c in self.choices))
        if self.ge is not None and self.le is not None:
            parts.append(f"from {_show(self.ge)} to {_show(self.le)}")
        elif self.ge is not None:
            parts.append(f"at least {_show(self.ge)}")
        elif self.le is not None:
            parts.append(f"at most {_show(self.le)}")
        if self.max_length is not None and self.choices is None:
            parts.append(f"up to {self.max_length:,} characters")
        line = ", ".join(parts)
        return f"{line} — {self.help}" if self.help else line

    def coerce(self, value):
        """Turn `value` (a Python value or a string from a form or the CLI) into this
        parameter's type, or raise ValueError with a message a user can act on."""
        blank = value is None or (isinstance(value, str) and not value.strip())
        if blank:
            if self.optional:
                return None
            if self.type is str and self.choices is None and not self.required and value is not None:
                return value  # a text parameter with a default may be left empty on purpose
            raise ValueError("a value is required")
        if self.choices is not None:
            # Matched by its text too, so "2" from a form picks the choice 2.
            for choice in self.choices:
                if value == choice and type(value) is type(choice) or str(value) == str(choice):
                    return choice
            options = ", ".join(repr(c) for c in self.choices)
            raise ValueError(f"{value!r} is not one of {options}")
        result = _coerce_type(self.type, value)
        if self.max_length is not None and len(result) > self.max_length:
            raise ValueError(f"the text is {len(result):,} characters long; the most is {self.max_length:,}")
        if self.ge is not None and result < self.ge:
            raise ValueError(f"{_show(result)} is below the minimum {_show(self.ge)}")
        if self.le is not None and result > self.le:
            raise ValueError(f"{_show(result)} is above the maximum {_show(self.le)}")
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
            "max_length": self.max_length,
        }


def _show(value) -> str:
    """A value as a user wrote it: dates as YYYY-MM-DD, everything else as its repr."""
    return value.isoformat() if isinstance(value, datetime.date) else repr(value)


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
    max_length: int | None = None


def param(default=_MISSING, *, ge=None, le=None, help="", choices=None, max_length=None):
    """Declare a parameter's default, bounds (`ge` ≤ value ≤ `le`), choices and help text.

    Leave out `default` for a required parameter. Use inside a `Params` subclass:
    `n_estimators: int = param(100, ge=1, le=2000, help="Trees in the forest")`.
    Text (`str`) is at most `max_length` characters (1,000 unless given); a required text
    parameter refuses blank input, one with a default may be empty (`param("")`).
    """
    return _ParamDefault(default, ge, le, help, tuple(choices) if choices is not None else None, max_length)


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
        raise DefinitionError(f"params={params_class!r} is not a subclass of app.pipelines.Params")
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
    max_length = declared.max_length
    if max_length is not None and hint is not str:
        raise DefinitionError(f"parameter {name!r}: max_length only applies to text (str)")
    if max_length is not None and (not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1):
        raise DefinitionError(f"parameter {name!r}: max_length must be a whole number of at least 1")
    if hint is str and max_length is None:
        max_length = MAX_LENGTH
    if declared.choices is not None:
        if choices is not None:
            raise DefinitionError(f"parameter {name!r}: give choices either by Literal or by choices=, not both")
        choices = declared.choices
    if (declared.ge is not None or declared.le is not None) and hint not in (int, float, datetime.date):
        raise DefinitionError(f"parameter {name!r}: bounds (ge/le) only apply to numbers and dates")
    spec = ParamSpec(
        name, hint, declared.default, declared.ge, declared.le, choices, declared.help, optional, max_length
    )
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


class ParamError(ValueError):
    """Raised by Pipeline.parse_params; `errors` maps parameter name to message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
