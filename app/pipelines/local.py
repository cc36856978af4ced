"""Run a pipeline in this process, without the database or a worker: the test harness for
pipeline authors (`Pipeline.run_local`).

    def test_it_trains_a_forest():
        result = train.run_local({"n_estimators": 5})
        assert result.metrics["accuracy"] > 0.8
        assert result.models["iris-rf"].metrics["accuracy"] > 0.8

Steps are called in the order a worker could run them, each with a `LocalContext`: the same
API as a worker's context, with what the step records (logs, metrics, tables, models) kept on
the `LocalRun` instead of stored. What a worker would refuse is refused here with the same
message, so a test catches it: bad parameters (ParamError), a definition with problems
(DefinitionError), an output that cannot be pickled, a metric that is not a number, a table
too big, a model its format cannot write, a value its declared format cannot take, named
outputs that are not the ones declared. Outputs go from step to step written and read in their
format (app.artifacts.formats: pickle, Parquet, .npy), as in a worker, so a step that changes
its input cannot change what another step receives; named outputs are saved one by one, and a
parameter naming one receives that one. One difference: a worker keeps a small DataFrame or
array in the database as a pickle, while run_local writes every one in its format, so a test
on small data meets what Parquet cannot hold.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import typing
from pathlib import Path

from app.pipelines import graph as dag
from app.pipelines import tags
from app.pipelines.params import DefinitionError

from app.pipelines.registry import Skip

if typing.TYPE_CHECKING:
    from app.pipelines.registry import Pipeline


class StepFailed(Exception):
    """A step raised (after its retries): its name and attempt, the step's exception chained."""

    def __init__(self, step: str, attempt: int, error: BaseException):
        self.step, self.attempt, self.error = step, attempt, error
        super().__init__(f"step {step!r} failed (attempt {attempt}): {type(error).__name__}: {error}")


class Cancelled(Exception):
    """Raised by `ctx.check_cancelled()` once `cancel_after` steps have run (run_local's
    `cancel_after`): lets a test see how a step behaves when its run is cancelled."""


@dataclasses.dataclass
class LocalModel:
    """A model version a step registered: the object itself, not a file."""

    name: str
    version: int
    obj: typing.Any
    metrics: dict
    step: str
    format: str


@dataclasses.dataclass
class LocalRun:
    """What `run_local` did. `outputs`, `logs`, `attempts` and `tables` by step name (tables
    as {step: {name: data}}, the data as the run page gets it; a mapped step's attempts as a
    list, one per item); `skipped`: step → why, for the steps skipped (tables
    as {step: {name: data}}, the data as the run page gets it); `metrics`: each metric's last
    value by name, `metric_log`: every (step, name, value) in order; `models`: the latest
    version of each model by name, `versions`: all of them in order."""

    params: typing.Any
    outputs: dict = dataclasses.field(default_factory=dict)
    skipped: dict = dataclasses.field(default_factory=dict)  # step → why
    tags: list = dataclasses.field(default_factory=list)  # what ctx.tag() added, sorted
    logs: dict = dataclasses.field(default_factory=dict)
    attempts: dict = dataclasses.field(default_factory=dict)
    metric_log: list = dataclasses.field(default_factory=list)
    tables: dict = dataclasses.field(default_factory=dict)
    versions: list = dataclasses.field(default_factory=list)
    workdir: Path | None = None

    @property
    def metrics(self) -> dict:
        return {name: value for _step, name, value in self.metric_log}

    @property
    def models(self) -> dict:
        return {version.name: version for version in self.versions}

    def log(self, step: str) -> str:
        return "\n".join(self.logs.get(step, []))


class _Collect(logging.Handler):
    def __init__(self, lines: list):
        super().__init__(logging.DEBUG)
        self.lines = lines
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def emit(self, record):
        self.lines.append(self.format(record))


class LocalContext:
    """A step's `ctx` under run_local: what it records goes to the LocalRun."""

    def __init__(self, local: LocalRun, pipe: Pipeline, step: str, position: int, attempt: int, cancelled: bool):
        self._local = local
        self.params = local.params
        self.run_id = 0
        self.step_run_id = position + 1
        self.attempt = attempt
        self.pipeline_name = pipe.name
        self.step_name = step
        self.map_index = None  # an item of a mapped step: its index
        self.logger = logging.getLogger(f"pipelines.{pipe.name}.{step}")
        self.cancel_requested = cancelled

    @property
    def artifacts_dir(self) -> Path:
        folder = self._local.workdir / self.step_name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def tag(self, *names: str) -> list[str]:
        """Tag the run (kept on the LocalRun's `tags`), checked as a worker checks them."""
        self._local.tags = tags.check([*self._local.tags, *names])
        return list(self._local.tags)

    def check_cancelled(self):
        if self.cancel_requested:
            raise Cancelled(f"the run was cancelled (run_local's cancel_after) before step {self.step_name!r} ended")

    def log_metric(self, name: str, value: float):
        from app.tracking import results

        self._local.metric_log.append((self.step_name, name, results.check_metric(name, value)))

    def log_table(self, name: str, rows, columns=None):
        from app.tracking import results

        self._local.tables.setdefault(self.step_name, {})[results.check_name(name)] = results.table_data(rows, columns)

    def log_confusion_matrix(self, y_true, y_pred, labels=None, display_labels=None, name="Confusion matrix"):
        from app.tracking import results

        data = results.confusion_data(y_true, y_pred, labels, display_labels)
        self._local.tables.setdefault(self.step_name, {})[results.check_name(name)] = data

    def register_model(self, name: str, obj, metrics: dict | None = None, format: str = "joblib", *, reference=None,
                       reference_predictions=None, feature_names=None):
        """Checked as a worker checks it (name, metrics, reference, and the model written in
        its format to the work folder); returns the version number, 1, 2 … per name."""
        from app.tracking import formats, versions

        versions.check_name(name)
        values = versions.check_metrics(metrics)
        versions.reference_profile(obj, reference, reference_predictions, feature_names)
        fmt = formats.get_format(format)
        number = 1 + sum(1 for v in self._local.versions if v.name == name)
        fmt.save(obj, self.artifacts_dir / f"{name}-{number}{fmt.suffix}")
        self._local.versions.append(LocalModel(name, number, obj, values, self.step_name, fmt.name))
        return number


def run_local(pipe: Pipeline, params: dict | None = None, *, given: dict | None = None, workdir=None,
              cancel_after: int | None = None) -> LocalRun:
    """Run `pipe` with `params` (raw values, as a form or the API would send them) in this
    process. `given` ({step: output}) stands in for steps: they are not run, and what takes
    their output gets the value given, so one step can be tested alone. Extra files
    (`ctx.artifacts_dir`, registered models) go under `workdir`, a new temporary folder if
    not given. `cancel_after=n`: `ctx.cancel_requested` is true from the (n+1)-th step run on.

    A failing step is tried again as its `retries=` allow (without waiting), then raises
    StepFailed; the steps it ran before are on the exception's `.run` (a LocalRun)."""
    problems = pipe.validate()
    if problems:
        raise DefinitionError(f"pipeline {pipe.name!r} cannot run: " + "; ".join(problems))
    local = LocalRun(params=pipe.make_params(pipe.parse_params(params or {})))
    local.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=f"{pipe.name}-"))
    given = dict(given or {})
    unknown = sorted(set(given) - set(pipe.steps))
    if unknown:
        raise ValueError(f"given= names no step of {pipe.name!r}: {', '.join(unknown)}")
    saved = {name: _saved(pipe.steps[name], value) for name, value in given.items()}
    groups = pipe.groups()
    for position, name in enumerate(dag.topological_order(pipe.graph())):
        if name in given:
            continue
        step = pipe.steps[name]
        upstream = pipe.upstream(step)
        why = _skip_reason([up for up in upstream if up in local.skipped], len(upstream), step.when_upstream)
        if why:
            local.skipped[name] = why
            continue

        def load(want):
            source, part = pipe.source(want)  # a named output: that one only
            return None if source in local.skipped else _loaded(saved[source], part)

        inputs = {
            want: {member: _loaded(saved[member]) for member in groups[want] if member not in local.skipped}
            if want in groups else load(want)
            for want in step.inputs
        }
        cancelled = cancel_after is not None and len(local.attempts) >= cancel_after
        if step.map_over is not None:
            value = _map(local, pipe, step, position, inputs, cancelled)
        else:
            value = _call(local, pipe, step, position, inputs, cancelled)
        if isinstance(value, _Skipped):
            local.skipped[name] = value.why
            continue
        try:
            saved[name] = _saved(step, value)
        except Exception as exc:
            raise _failed(local, name, local.attempts.get(name, 1), exc) from exc
        local.outputs[name] = _loaded(saved[name])
    return local


@dataclasses.dataclass
class _Skipped:
    why: str


def _skip_reason(skipped: list, upstream: int, when_upstream: str) -> str | None:
    """The rule of app.runs.mapping.skip_reason, on names."""
    if not skipped:
        return None
    if when_upstream != "any":
        return f"upstream step {skipped[0]!r} was skipped" + (f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else "")
    return "every upstream step was skipped" if len(skipped) == upstream else None


def _map(local: LocalRun, pipe: Pipeline, step, position: int, inputs: dict, cancelled: bool):
    """A mapped step: the function once per item of its `over` input, results in order."""
    over = inputs[step.map_over]
    if isinstance(over, dict):
        keys, values = list(over), list(over.values())
    elif isinstance(over, (list, tuple)):
        keys, values = None, list(over)
    else:
        error = TypeError(f"maps over the output of {step.map_over!r}, which is a {type(over).__module__}."
                          f"{type(over).__qualname__}, not a list, a tuple or a dict")
        raise _failed(local, step.name, 1, error)
    results, attempts = [], []
    for index, item in enumerate(values):
        value = _call(local, pipe, step, position, {**inputs, step.map_over: item}, cancelled, index)
        attempts.append(local.attempts[step.name])
        results.append(None if isinstance(value, _Skipped) else value)
    local.attempts[step.name] = attempts
    return dict(zip(keys, results)) if keys is not None else results


def _formats():
    # Imported when a run needs it: app.artifacts imports Django's storage API, and this
    # package imports nothing of Django (see app/pipelines/__init__.py).
    from app.artifacts import formats, outputs

    return formats, outputs


def _saved(step, value):
    """What a worker would save of `value`: (format, bytes), or {output: (format, bytes)}
    for named outputs. Raises as the worker fails the step."""
    formats, outputs = _formats()
    if step.outputs is None:
        return _written(formats, f"step {step.name!r}", value, step.format, whole=True)
    parts = outputs.split(step.name, value, list(step.outputs))
    return {
        name: _written(formats, f"step {step.name!r}, output {name!r}", part, step.outputs[name], whole=False)
        for name, part in parts.items()
    }


def _written(formats, label: str, value, declared: str | None, whole: bool):
    fmt = formats.choose(value, 0, label) if declared is None else formats.declared(declared, value, label)
    fmt, prepared = formats.prepared(fmt, value, label, chosen=declared is None)
    try:
        return fmt, fmt.dumps(prepared)
    except Exception as exc:
        if fmt is not formats.PICKLE:
            raise
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        if whole:
            raise TypeError(
                f"{label} returned a {kind}, which cannot be saved: step outputs are pickled "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        raise formats.OutputError(
            f"{label} is a {kind}, which cannot be saved: it is pickled ({type(exc).__name__}: {exc})"
        ) from exc


def _loaded(stored, part: str | None = None):
    """A saved output read back: one value, all named outputs as a dict, or one of them."""
    if isinstance(stored, tuple):
        fmt, data = stored
        return fmt.loads(data)
    if part is not None:
        return _loaded(stored[part])
    return {name: _loaded(value) for name, value in stored.items()}


def _call(local: LocalRun, pipe: Pipeline, step, position: int, inputs: dict, cancelled: bool, index=None):
    lines = local.logs.setdefault(step.name, [])
    handler = _Collect(lines)
    logger = logging.getLogger(f"pipelines.{pipe.name}.{step.name}")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # as in a worker (app.runs.engine)
    try:
        for attempt in range(1, step.retries + 2):
            local.attempts[step.name] = attempt
            ctx = LocalContext(local, pipe, step.name, position, attempt, cancelled)
            ctx.map_index = index
            try:
                if step.when is not None and not step.when(ctx, **{name: inputs[name] for name in step.when_inputs}):
                    return _Skipped("its condition is false")
                value = step.func(ctx, **inputs)
                if isinstance(value, Skip):
                    return _Skipped(f"it returned skip({value.reason!r})" if value.reason else "it returned skip()")
                return value
            except Cancelled:
                raise
            except Exception as exc:
                lines.append(f"attempt {attempt} failed: {type(exc).__name__}: {exc}")
                if attempt > step.retries:
                    raise _failed(local, step.name, attempt, exc) from exc
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _failed(local: LocalRun, step: str, attempt: int, error: BaseException) -> StepFailed:
    failure = StepFailed(step, attempt, error)
    failure.run = local
    return failure
