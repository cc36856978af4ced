"""What makes a step's definition unfit, found when it is decorated: its function, its
condition, its named outputs; and where a function is defined (file:line), for messages.
Plain Python, like the rest of the pipeline API (app.pipelines.registry uses these)."""

from __future__ import annotations

import inspect

from app.pipelines.problems import relative_path

# How a step output is written (app.artifacts.formats, which tests/test_output_formats.py
# checks has exactly these): named here too, since this package imports nothing of Django.
OUTPUT_FORMATS = ("pickle", "parquet", "npy")


def where(func) -> str:
    """`file:line` of a function's definition, the file relative to the project if it can be."""
    code = getattr(func, "__code__", None)
    if code is None:
        return getattr(func, "__module__", None) or "?"
    return f"{relative_path(code.co_filename)}:{code.co_firstlineno}"


def condition_inputs(step_name, where, when, inputs, problems) -> list[str]:
    """The inputs a step's condition takes (its parameters after ctx), each one of the step's."""
    if when is None:
        return []
    if not callable(when):
        problems.append(f"step {step_name!r} ({where}): when= must be a function of ctx and inputs, not {when!r}")
        return []
    try:
        names = list(inspect.signature(when).parameters)
    except (TypeError, ValueError):
        return []
    if not names:
        problems.append(f"step {step_name!r} ({where}): its when= function must take ctx as first argument")
        return []
    unknown = [n for n in names[1:] if n not in inputs]
    if unknown:
        problems.append(
            f"step {step_name!r} ({where}): its when= function takes {', '.join(map(repr, unknown))}, which the step "
            f"does not take; a condition reads ctx and the step's own inputs ({', '.join(inputs) or 'none'})"
        )
    return [n for n in names[1:] if n in inputs]


def describe_condition(when) -> str:
    """How the pages name a condition: its function's name ("lambda" for a lambda, whose
    text is in the step's source shown next to it)."""
    return getattr(when, "__name__", "").replace("<lambda>", "lambda") or "a condition"


def named_outputs(step_name, outputs) -> tuple[dict | None, list[str]]:
    """`outputs=` as {name: declared format or None} in order (None when not given), and
    what is wrong with it."""
    if outputs is None:
        return None, []
    label = f"step {step_name!r}"
    if isinstance(outputs, dict):
        pairs = list(outputs.items())
    elif isinstance(outputs, (list, tuple)):
        pairs = [(output, None) for output in outputs]
    else:
        return None, [f"{label}: outputs must be a list of names, or a dict of names and formats, not {outputs!r}"]
    if not pairs:
        return None, [f"{label}: outputs must name at least one output"]
    named, problems = {}, []
    for output, fmt in pairs:
        if not (isinstance(output, str) and output.isidentifier()):
            problems.append(f"{label}: output {output!r} must be a Python identifier")
        elif output in named:
            problems.append(f"{label}: output {output!r} is named twice")
        elif fmt is not None and fmt not in OUTPUT_FORMATS:
            problems.append(
                f"{label}: output {output!r} has format {fmt!r}; formats are {', '.join(OUTPUT_FORMATS)}"
            )
        else:
            named[output] = fmt
    return named, problems


def function_problems(step_name, where, func, parameters) -> list[str]:
    """What makes a function unfit to be a step, beyond its first (context) argument."""
    label = f"step {step_name!r} ({where})"
    problems = []
    if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
        problems.append(f"{label}: is an async function; a worker calls steps as plain functions, so use def")
    elif inspect.isgeneratorfunction(func):
        problems.append(f"{label}: is a generator (it has yield); a step returns its output, so return a list")
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            problems.append(
                f"{label}: takes {'*' if parameter.kind == parameter.VAR_POSITIONAL else '**'}{parameter.name}; "
                "name each upstream step whose output it needs as a parameter, or put them in a group "
                "(@<pipeline>.step(group=...)) and name the group"
            )
        elif parameter.default is not parameter.empty:
            problems.append(
                f"{label}: parameter {parameter.name!r} has a default, but a step's parameters after ctx name the "
                "upstream steps (or groups) whose outputs it receives; read settings from ctx.params instead"
            )
    return problems
