"""Pipelines, their steps and the registry that collects them: the heart of the pipeline
API (pipeline modules import it through `app.pipelines`).

    from app.pipelines import Params, param, pipeline

    class TrainParams(Params):
        n_estimators: int = param(100, ge=1, le=2000, help="Trees in the forest")

    train = pipeline("train_classifier", params=TrainParams, description="…")

    @train.step()
    def load(ctx): ...

    @train.step()
    def fit(ctx, load): ...          # a parameter naming a step is an edge: its output arrives

    @train.step(group="models")      # steps of a group …
    def forest(ctx, fit): ...

    @train.step(after=[forest])      # after=: order only, no output passed
    def report(ctx, models): ...     # … arrive together: {"forest": …, …} by step name

    @train.step(outputs=["X_train", "X_test"])   # named outputs, each saved on its own …
    def split(ctx, load): return {"X_train": …, "X_test": …}

    @train.step(format="parquet")    # a declared format (else chosen by type)
    def score(ctx, X_test): ...      # … a parameter naming one receives that one only

    @train.step(pool="gpu")          # at most the pool's size of such steps run at once
    def tune(ctx, fit): ...          # (sizes are set on the Pools page; one slot until then)

    nightly = pipeline("nightly", max_active_runs=1)   # its runs one at a time, the rest queued

This module has no Django imports: pipeline modules import only the pipeline API and their
own libraries. Definitions are collected here and checked by `validate()`; the Django side
(app.apps, app.pipelines.checks) discovers `pipelines/` at start-up and only keeps valid
pipelines.
"""

from __future__ import annotations

import datetime
import hashlib
import inspect
import json
import re
import textwrap
import tokenize
import typing
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from app.pipelines import definitions
from app.pipelines import graph as dag
from app.pipelines.definitions import OUTPUT_FORMATS
from app.pipelines.discovery import Registry
from app.pipelines.params import DefinitionError, ParamError, Params, param, param_specs

__all__ = [
    "pipeline", "Params", "param", "Pipeline", "Step", "Registry", "registry", "ParamError", "DefinitionError", "skip",
    "Skip",
]


NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
# How a worker runs a step's attempts: in a child process it supervises (a crash, a
# timeout or a runaway C call hurts that attempt only), or in one of its own threads.
ISOLATIONS = ("process", "thread")
# Queues route steps to the workers serving them (app.runs.tasks); the name is also part of
# the queue's key in Redis or SQLite.
DEFAULT_QUEUE = "default"
QUEUE_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,49}")
QUEUE_RULE = "queue must be 1–50 lowercase letters, digits, _ or -, starting with a letter or digit"
# Concurrency pools (@p.step(pool=...)) are named like queues: they show in URLs and messages.
POOL_RULE = "pool must be 1–50 lowercase letters, digits, _ or -, starting with a letter or digit"


def valid_queue(queue) -> bool:
    return isinstance(queue, str) and QUEUE_PATTERN.fullmatch(queue) is not None


# --- pipelines and steps ----------------------------------------------------------------


@dataclass(frozen=True)
class Skip:
    """What a step returns to say it has nothing to do (`return skip("no new rows")`)."""

    reason: str = ""


def skip(reason: str = "") -> Skip:
    """Return this from a step to skip it: its status is skipped (not failed), with `reason`."""
    return Skip(str(reason)[:400])


@dataclass
class Step:
    """A step of a pipeline: a function called with the run context and upstream outputs."""

    pipeline: Pipeline
    name: str
    func: typing.Callable
    after: list[str]
    inputs: list[str]
    retries: int = 0
    retry_delay: float = 0.0
    backoff: float = 1.0
    isolation: str = "process"
    timeout: float | None = None
    queue: str = DEFAULT_QUEUE
    group: str | None = None
    # The declared format of its output (None: chosen by type), and its named outputs in
    # order, each with its declared format (None: `format`, else chosen by type).
    format: str | None = None
    outputs: dict[str, str | None] | None = None
    # A mapped step (`@p.map(over=...)`): the upstream step whose output's items it runs once each.
    map_over: str | None = None
    # A condition (`when=`): called with ctx and the inputs it names; false skips the step.
    when: typing.Callable | None = None
    # With a skipped upstream step: "all" (the default) skips this step too, "any" runs it
    # when at least one upstream step succeeded (a skipped one's input arrives as None).
    when_upstream: str = "all"
    when_inputs: list[str] = field(default_factory=list)
    # Caching (app.runs.cache): True, or a function of ctx and inputs giving the key.
    cache: typing.Any = False
    # A sub-pipeline step (`@p.subpipeline("name")`): the pipeline its child run runs.
    child: str | None = None
    # The concurrency pool it takes a slot of while it runs (app.runs.admission), or None.
    pool: str | None = None

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before attempt `attempt + 1`, after attempt `attempt` failed."""
        return self.retry_delay * self.backoff ** (attempt - 1)

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)

    @property
    def where(self) -> str:
        return definitions.where(self.func)

    @property
    def doc(self):
        return inspect.cleandoc(self.func.__doc__ or "")

    @property
    def source(self):
        """The step's code as its module was when it was loaded (not as the file is now)."""
        code = getattr(self.func, "__code__", None)
        text = self.pipeline.module_source
        if code is not None and text and code.co_filename == self.pipeline.module_file:
            lines = text.splitlines(keepends=True)[code.co_firstlineno - 1:]
            try:
                return textwrap.dedent("".join(inspect.getblock(lines)))
            except (IndexError, SyntaxError, tokenize.TokenError):
                pass
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
    # The defining module's file and text, read when it was imported: the snapshot shows
    # and hashes the code this process runs, helpers included, even if the file changes later.
    module_file: str = field(default="", repr=False)
    module_source: str = field(default="", repr=False)
    isolation: str = "process"
    queue: str = DEFAULT_QUEUE
    # At most this many of its runs are active at once (app.runs.admission); None: no limit.
    max_active_runs: int | None = None
    steps: dict[str, Step] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    _snapshot: dict | None = field(default=None, repr=False, compare=False)
    _snapshot_steps: int = field(default=0, repr=False, compare=False)

    def map(self, over, after=(), **options):
        """Decorator adding a mapped step: it runs once per item of the output of step `over`
        (a list, a tuple or a dict), each item a step run of its own (status, log, retries,
        attempts), created when `over` succeeds; up to MAP_MAX_ITEMS (10,000). The item
        arrives in the parameter named like `over`; the step's other parameters take
        upstream outputs as usual. What takes this step's output receives the items' results
        as a list in the items' order (a dict with the same keys when `over` returned a
        dict). The step's options are `step()`'s.

            @p.map(over=files)
            def parse(ctx, files):     # one file per step run
                ...
        """
        if isinstance(over, Step):
            over_name = over.name
        elif isinstance(over, str):
            over_name = over
        else:
            over_name = None
            self.problems.append(f"@{self.name}.map(over={over!r}): over= takes a step or a step's name")

        def decorate(func):
            step = self.step(after, **options)(func)
            if isinstance(step, Step):
                step.map_over = over_name
                if over_name is not None and over_name not in step.inputs:
                    self.problems.append(
                        f"step {step.name!r} ({step.where}): maps over {over_name!r}, so it takes each item as a "
                        f"parameter named {over_name!r}: def {step.name}(ctx, {over_name}, ...)"
                    )
            return step

        return decorate

    def subpipeline(self, pipeline_name: str, after=(), **options):
        """Decorator adding a step that runs pipeline `pipeline_name` as a child run: the
        function (called with ctx and its inputs, like any step) returns the child's
        parameters (a dict; None for its defaults). The step then waits for the child run
        without holding a worker thread, and succeeds with the child's result: the output
        of its last step (a dict by step name when it has several), or fails when the child
        run does not succeed. The child run is linked to this step and listed on its run's
        page. Options are `step()`'s.

            @p.subpipeline("train_classifier")
            def train_wine(ctx, prepare):
                return {"dataset": "wine", "n_estimators": 50}
        """
        if not isinstance(pipeline_name, str) or not pipeline_name:
            self.problems.append(f"@{self.name}.subpipeline({pipeline_name!r}): give the child pipeline's name")
            pipeline_name = None

        def decorate(func):
            step = self.step(after, **options)(func)
            if isinstance(step, Step):
                step.child = pipeline_name
            return step

        return decorate

    def step(self, after=(), *, name=None, retries=0, retry_delay=0, backoff=1, timeout=None, isolation=None,
             queue=None, group=None, when=None, when_upstream="all", cache=False, format=None, outputs=None,
             pool=None):
        """Decorator adding a step. The function's parameters after `ctx` name what it takes:
        a step (its output arrives, and the step runs after it), a group (a dict of the
        outputs of the group's steps, by step name, in the order they were defined) or a
        named output of another step (that output only). `after` lists further steps
        (functions or names) it waits for without taking their output.
        `group`: the group this step belongs to (a name that is not a step's).

        Conditions: `when=` a function called before the step with `ctx` and the step's
        inputs it names (`when=lambda ctx, rows: len(rows) > 0`); false skips the step
        (status skipped, not a failure), as does the step returning `skip("why")`. A step
        below a skipped one is skipped too, unless it says `when_upstream="any"`: then it
        runs when at least one of its upstream steps succeeded, and a skipped step's output
        arrives as None (a group leaves skipped steps out).

        `cache=True`: a step whose code, inputs and the parameters it reads are those of an
        earlier success reuses that output instead of running ("reused from run #N");
        `cache=<function of ctx and inputs>` gives the key itself (app.runs.cache).
        `format`: how its output is saved, "pickle", "parquet" (a pandas DataFrame or a
        pyarrow Table) or "npy" (a numpy array); by default chosen by the value's type
        (app.artifacts.formats). `outputs=["X_train", "y_train"]`: the step returns a dict
        with those keys (or a tuple in that order) and each is saved on its own, in its
        format (`outputs={"X_train": "npy", "report": "pickle"}` declares them one by one).
        A parameter naming the step receives them all, as a dict by name.

        A failed attempt is tried again up to `retries` times, the n-th retry
        `retry_delay * backoff ** (n - 1)` seconds after the failure. An attempt still going
        after `timeout` seconds (default: the STEP_TIMEOUT_SECONDS setting) is stopped and
        fails. `isolation` ("process", the default, or "thread": see `pipeline()`). `queue`:
        only workers serving that queue run the step (default: the pipeline's queue).

        `pool="gpu"`: the step takes a slot of the concurrency pool "gpu" while it runs; at
        most the pool's size of the steps naming it run at once, over all workers and
        pipelines (sizes are set on the dashboard's Pools page; a pool never set has one
        slot). A step that finds the pool full stays queued, saying what it waits for, and
        starts when a slot is free; waiting is not an attempt. A mapped step's items each
        take a slot.

        `@p.step` without parentheses works too."""
        if inspect.isfunction(after):  # a bare @p.step: `after` is the function itself
            return self.step((), name=name, retries=retries, retry_delay=retry_delay, backoff=backoff,
                             timeout=timeout, isolation=isolation, queue=queue, group=group, when=when,
                             when_upstream=when_upstream, cache=cache, format=format, outputs=outputs,
                             pool=pool)(after)
        if isinstance(after, (Step, str)):
            after = [after]

        def decorate(func):
            if not callable(func):
                self.problems.append(f"@{self.name}.step() decorates {func!r}, which is not a function")
                return func
            step_name = name or getattr(func, "__name__", repr(func))
            where = definitions.where(func)
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
                elif callable(dep):
                    self.problems.append(
                        f"step {step_name!r} ({where}): after= holds the function "
                        f"{getattr(dep, '__module__', '?')}.{getattr(dep, '__qualname__', repr(dep))}, which is not "
                        f"a step of {self.name!r}: decorate it with @<pipeline>.step() first, or give the step's name"
                    )
                else:
                    self.problems.append(
                        f"step {step_name!r} ({where}): after= holds {dep!r}, not a step or a step name"
                    )
            try:
                parameters = list(inspect.signature(func).parameters.values())
            except (TypeError, ValueError):
                parameters = []
            names = [p.name for p in parameters]
            if not names:
                self.problems.append(f"step {step_name!r}: its function must take the run context as first argument")
            self.problems.extend(definitions.function_problems(step_name, where, func, parameters[1:]))
            if not isinstance(step_name, str) or not step_name.isidentifier():
                self.problems.append(
                    f"step {step_name!r}: its name must be a Python identifier (use a def, or pass name=)"
                )
            if step_name in self.steps:
                self.problems.append(f"step {step_name!r} is defined twice")
            if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
                self.problems.append(f"step {step_name!r}: retries must be a whole number ≥ 0")
            if not isinstance(retry_delay, (int, float)) or isinstance(retry_delay, bool) or not 0 <= retry_delay <= 86400:
                self.problems.append(f"step {step_name!r}: retry_delay must be a number of seconds from 0 to 86400")
            if not isinstance(backoff, (int, float)) or isinstance(backoff, bool) or not 1 <= backoff <= 10:
                self.problems.append(f"step {step_name!r}: backoff must be a number from 1 to 10")
            if timeout is not None and (
                not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 1 <= timeout <= 7 * 86400
            ):
                self.problems.append(f"step {step_name!r}: timeout must be a number of seconds from 1 to 604800")
            if isolation is not None and isolation not in ISOLATIONS:
                self.problems.append(f"step {step_name!r}: isolation must be one of {', '.join(ISOLATIONS)}")
            if queue is not None and not valid_queue(queue):
                self.problems.append(f"step {step_name!r}: {QUEUE_RULE}, not {queue!r}")
            if pool is not None and not valid_queue(pool):
                self.problems.append(f"step {step_name!r}: {POOL_RULE}, not {pool!r}")
            if group is not None and not (isinstance(group, str) and group.isidentifier()):
                self.problems.append(f"step {step_name!r}: group must be a Python identifier, not {group!r}")
            if format is not None and format not in OUTPUT_FORMATS:
                self.problems.append(
                    f"step {step_name!r}: format must be one of {', '.join(OUTPUT_FORMATS)}, not {format!r}"
                )
            named, problems = definitions.named_outputs(step_name, outputs)
            self.problems.extend(problems)
            inputs = [
                p.name for p in parameters[1:]
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.default is p.empty  # reported above
            ]
            if when_upstream not in ("all", "any"):
                self.problems.append(f"step {step_name!r}: when_upstream must be 'all' or 'any', not {when_upstream!r}")
            when_inputs = definitions.condition_inputs(step_name, where, when, inputs, self.problems)
            if not (isinstance(cache, bool) or callable(cache)):
                self.problems.append(
                    f"step {step_name!r} ({where}): cache= takes True, False or a function of ctx and inputs "
                    f"returning the key, not {cache!r}"
                )
            step = Step(
                self, step_name, func, upstream, inputs, retries, retry_delay, backoff,
                isolation or self.isolation, timeout, queue or self.queue, group,
                format if format in OUTPUT_FORMATS else None,
                {output: fmt or (format if format in OUTPUT_FORMATS else None) for output, fmt in named.items()}
                if named is not None else None,
                when=when, when_upstream=when_upstream, when_inputs=when_inputs, cache=cache,
                pool=pool if valid_queue(pool) else None,
            )
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
        groups = self.groups()
        for group in [g for g in groups if g in self.steps]:
            problems.append(f"group {group!r} has the name of a step: a parameter {group!r} could mean either")
            del groups[group]
        owners = self._output_problems(groups, problems)
        for step in self.steps.values():
            for dep in step.after:
                if dep not in self.steps:
                    problems.append(f"step {step.name!r}: depends on unknown step {dep!r}")
            if step.map_over is not None and step.map_over not in self.steps:
                problems.append(f"step {step.name!r}: maps over unknown step {step.map_over!r}")
            for wanted in step.inputs:
                if wanted not in self.steps and wanted not in groups and wanted not in owners:
                    what = "step, group or output" if owners else "step or group"
                    problems.append(
                        f"step {step.name!r} ({step.where}): parameter {wanted!r} names no {what} of "
                        f"{self.name!r} (steps: {', '.join(self.steps)}"
                        f"{'; groups: ' + ', '.join(groups) if groups else ''}"
                        f"{'; outputs: ' + ', '.join(owners) if owners else ''}); "
                        "a step's parameters after ctx take upstream outputs, read settings from ctx.params"
                    )
                elif wanted in groups and step.name in groups[wanted]:
                    problems.append(f"step {step.name!r} takes its own group {wanted!r}")
                elif owners.get(wanted) == step.name:
                    problems.append(f"step {step.name!r} takes its own output {wanted!r}")
        if problems:
            return problems
        cycle = dag.find_cycle(self.graph())
        if cycle:
            problems.append("its steps form a cycle: " + " → ".join(cycle + [cycle[0]]))
        return problems

    def _output_problems(self, groups: dict, problems: list) -> dict[str, str]:
        """Named outputs must be unique in the pipeline and not the name of a step or group
        (a parameter naming it could mean either); adds what is wrong to `problems`.
        Returns the usable ones' owners, as `output_owners`."""
        owners = {}
        for step in self.steps.values():
            for output in step.outputs or ():
                if output in self.steps:
                    problems.append(
                        f"step {step.name!r}: output {output!r} has the name of a step: a parameter {output!r} "
                        "could mean either"
                    )
                elif output in groups:
                    problems.append(
                        f"step {step.name!r}: output {output!r} has the name of a group: a parameter {output!r} "
                        "could mean either"
                    )
                elif output in owners:
                    problems.append(
                        f"step {step.name!r}: output {output!r} is an output of step {owners[output]!r} too: "
                        "output names must be unique in the pipeline"
                    )
                else:
                    owners[output] = step.name
        return owners

    def output_owners(self) -> dict[str, str]:
        """The step of each named output, by output name."""
        return {output: step.name for step in self.steps.values() for output in step.outputs or ()}

    def source(self, wanted: str) -> tuple[str, str | None]:
        """What a parameter that is not a group names: (its step, None), or (the step, the
        output) for a named output."""
        owner = self.output_owners().get(wanted)
        return (owner, wanted) if owner is not None else (wanted, None)

    def groups(self) -> dict[str, list[str]]:
        """The steps of each group, in the order they were defined."""
        found = {}
        for step in self.steps.values():
            if step.group is not None:
                found.setdefault(step.group, []).append(step.name)
        return found

    def upstream(self, step: Step) -> list[str]:
        """The steps `step` runs after: its `after=`, then what its parameters name (a step,
        each step of a group, the step of a named output), each once."""
        groups = self.groups()
        owners = self.output_owners()
        found = dict.fromkeys(step.after)
        for wanted in step.inputs:
            if wanted in groups:
                found.update(dict.fromkeys(groups[wanted]))
            elif wanted in self.steps:
                found[wanted] = None
            elif wanted in owners:
                found[owners[wanted]] = None
        return list(found)

    def graph(self) -> nx.DiGraph:
        return dag.build(self.steps.keys(), ((dep, s.name) for s in self.steps.values() for dep in self.upstream(s)))

    def snapshot(self) -> dict:
        """The JSON description of this DAG kept with every run: steps in topological order,
        edges, docstrings, sources and a hash that changes whenever any of them changes.
        Computed once per definition (reading sources is slow; the code cannot change
        without the module being imported again, which makes a new Pipeline)."""
        if self._snapshot is None or self._snapshot_steps != len(self.steps):
            self._snapshot = self._build_snapshot()
            self._snapshot_steps = len(self.steps)
        return self._snapshot

    def snapshot_step(self, name: str) -> dict:
        """The snapshot's entry of step `name`."""
        return next(step for step in self.snapshot()["steps"] if step["name"] == name)

    def _build_snapshot(self) -> dict:
        graph = self.graph()
        order = dag.topological_order(graph)
        steps = [
            {
                "name": s.name,
                "doc": s.doc,
                "source": s.source,
                "after": self.upstream(s),
                "inputs": list(s.inputs),
                "retries": s.retries,
                "retry_delay": s.retry_delay,
                "backoff": s.backoff,
                "isolation": s.isolation,
                "timeout": s.timeout,
                "queue": s.queue,
                # Only when used, so the hash of a pipeline that has none stays what it was.
                **({"group": s.group} if s.group else {}),
                **({"map_over": s.map_over} if s.map_over else {}),
                **({"when": definitions.describe_condition(s.when)} if s.when else {}),
                **({"when_upstream": s.when_upstream} if s.when_upstream != "all" else {}),
                **({"cache": "key" if callable(s.cache) else True} if s.cache else {}),
                **({"child": s.child} if s.child else {}),
                **({"format": s.format} if s.format else {}),
                **({"outputs": list(s.outputs)} if s.outputs else {}),
                **({"pool": s.pool} if s.pool else {}),
            }
            for s in (self.steps[name] for name in order)
        ]
        body = {
            "pipeline": self.name,
            "module": self.module,
            "module_hash": hashlib.sha256(self.module_source.encode()).hexdigest() if self.module_source else "",
            "description": self.description,
            "steps": steps,
            "edges": [list(e) for e in graph.edges],
            "params": [spec.as_dict() for spec in self.param_specs],
            **({"groups": self.groups()} if self.groups() else {}),
            **({"max_active_runs": self.max_active_runs} if self.max_active_runs is not None else {}),
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

    def run_local(self, params: dict | None = None, **options):
        """Run this pipeline in this process without the database or a worker, for tests:
        see app.pipelines.local.run_local. Returns a LocalRun (outputs, logs, metrics,
        tables, models by name)."""
        from app.pipelines.local import run_local

        return run_local(self, params, **options)

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


# --- the registry -----------------------------------------------------------------------


registry = Registry()


def pipeline(
    name: str, *, params=None, description: str = "", isolation: str = "process", queue: str = DEFAULT_QUEUE,
    max_active_runs: int | None = None,
) -> Pipeline:
    """Define a pipeline. Add steps with the `@p.step(after=[...])` decorator.

    `isolation="process"` (the default): a worker runs each attempt of a step in a child
    process it forks and supervises, so a segfault, an out-of-memory kill, `sys.exit()` or a
    C call that holds the GIL for minutes fails that attempt only, and `timeout=` can be
    enforced. `isolation="thread"` runs attempts in a worker thread instead: a millisecond
    less per step, but such a step can take the whole worker down and cannot be timed out.
    `run_pipeline --sync` always runs steps in its own process, for debugging.

    `queue`: only workers started for that queue (`run_huey --queue gpu`, or HUEY_QUEUE)
    run this pipeline's steps; a step may name its own (`@p.step(queue=...)`).

    `max_active_runs=N`: at most N runs of this pipeline are active (started, not finished)
    at once, in the order they were started; a run beyond that stays queued, saying it waits
    for a run slot, and starts when an earlier one finishes. None (the default): no limit."""
    limit_ok = max_active_runs is None or (
        isinstance(max_active_runs, int) and not isinstance(max_active_runs, bool) and max_active_runs >= 1
    )
    pipe = Pipeline(
        name=name, description=inspect.cleandoc(description), params_class=params, isolation=isolation,
        queue=queue if valid_queue(queue) else DEFAULT_QUEUE, max_active_runs=max_active_runs if limit_ok else None,
    )
    if not limit_ok:
        pipe.problems.append(
            f"max_active_runs must be a whole number ≥ 1, or None for no limit, not {max_active_runs!r}"
        )
    if isolation not in ISOLATIONS:
        pipe.problems.append(f"isolation must be one of {', '.join(ISOLATIONS)}, not {isolation!r}")
    if not valid_queue(queue):
        pipe.problems.append(f"{QUEUE_RULE}, not {queue!r}")
    frame = inspect.currentframe().f_back
    pipe.module = frame.f_globals.get("__name__", "") if frame else ""
    pipe.module_file = frame.f_code.co_filename if frame else ""
    try:
        pipe.module_source = Path(pipe.module_file).read_text() if pipe.module_file else ""
    except (OSError, UnicodeDecodeError):
        pipe.module_source = ""
    registry.add(pipe)
    return pipe
