"""Caching step outputs (`@p.step(cache=True)`): skip work already done.

A cached step's key is a hash of its pipeline and name, its code (the step's source as the
snapshot has it; its compiled code where there is no source) and the content of each input
it takes (an item of a mapped step: its own input). Before running it, the worker looks for
a step run with that key that succeeded and read the same values of the parameters that
this run has: the step then reuses that output ("reused from run #N"), at the cost of one
indexed query, and its function is not called. Parameters count only when the step read
them: while a cached step runs, `ctx.params` notes which it reads, and those (with their
values) are kept with its output. `cache=<function of ctx and inputs>` gives the key
yourself instead (a version string, a date): the code still counts, parameters do not.

An input's hash is of its stored bytes (the pickle, or the file), computed once and kept on
the step run that made it (`output_hash`). Pickles of equal values are nearly always equal
bytes; when they are not (a set of strings pickled in two processes), the step runs again:
a miss, never a wrong hit. A run started with "ignore cache" runs every step (and its
outputs are cached for later runs).

Prefect's cache keys (inputs + task source), Dagster's code versions and Kedro's "only
missing" are the models: the recipe "process only new batches" is a mapped step over the
batches with cache=True (docs/pipelines.md).
"""

from __future__ import annotations

import hashlib
import inspect
import marshal

from django.db.models import Q

from app import artifacts
from app.models import Run, Status, StepRun
from app.runs import mapping

# Succeeded step runs with the same key looked at for matching parameters, newest first.
CANDIDATES = 20


class ReadingParams:
    """A run's parameters that note which of them the step reads (`as_dict()` reads all)."""

    def __init__(self, params):
        object.__setattr__(self, "_params", params)
        object.__setattr__(self, "read", set())

    def __getattr__(self, name):
        value = getattr(self._params, name)
        if name == "as_dict":
            self.read.update(vars(self._params))
        elif name in vars(self._params):
            self.read.add(name)
        return value

    def __setattr__(self, name, value):
        raise AttributeError("a run's parameters cannot be changed by a step")

    def __repr__(self):
        return repr(self._params)


def code_hash(step) -> str:
    """The step's code: its source, else its compiled code (a function made without a file)."""
    source = step.source
    if source:
        return hashlib.sha256(source.encode()).hexdigest()
    code = getattr(step.func, "__code__", None)
    return hashlib.sha256(marshal.dumps(code) if code is not None else repr(step.func).encode()).hexdigest()


def content_hash(path: str, inline, part: str | None = None) -> str:
    """The hash of a stored value's bytes: the pickle kept in the database, or the file; of
    named outputs, each one's (`part`: that one's only), not of where they are kept."""
    digest = hashlib.sha256()
    entries = artifacts.manifest(path, inline) if path and artifacts.is_manifest(path) else None
    if entries is not None:
        for name, part_path, part_inline, _format in entries:
            if part is None or name == part:
                digest.update(f"{name}:{content_hash(part_path, part_inline)}".encode())
        return digest.hexdigest()
    if inline is not None:
        digest.update(bytes(inline))
    elif path:
        with artifacts.open_artifact(path) as handle:
            for block in iter(lambda: handle.read(1024 * 1024), b""):
                digest.update(block)
    else:
        digest.update(b"none")  # marked succeeded by hand, or skipped: no output
    return digest.hexdigest()


def _output_hash(pk: int, path: str, inline, items_total: int) -> str:
    """The hash of a step run's output as a step taking it receives it (a mapped step's:
    of its items' outputs in order, with its keys), kept on the step run once computed."""
    known = StepRun.objects.filter(pk=pk).values_list("output_hash", flat=True).first()
    if known:
        return known
    digest = hashlib.sha256(content_hash(path, inline).encode())
    if items_total:
        for item_pk, item_path, item_inline, items in StepRun.objects.filter(map_of_id=pk).order_by(
            "map_index"
        ).values_list("pk", "output_path", "output_inline", "items_total"):
            digest.update(_output_hash(item_pk, item_path, item_inline, items).encode())
    value = digest.hexdigest()
    StepRun.objects.filter(pk=pk, output_hash="").update(output_hash=value)
    return value


def _step_digest(step):
    return hashlib.sha256(f"{step.pipeline.name}\0{step.name}\0{code_hash(step)}".encode())


def custom_key(step, ctx, inputs: dict) -> str:
    """The key of a step whose `cache=` is a function of ctx and the inputs it names."""
    names = list(inspect.signature(step.cache).parameters)[1:]
    digest = _step_digest(step)
    digest.update(b"\0key\0" + repr(step.cache(ctx, **{n: inputs[n] for n in names if n in inputs})).encode())
    return digest.hexdigest()


def key_for(step_run: StepRun, step, rows: dict) -> str:
    """The cache key of this attempt of a cached step, from its code and its inputs' content
    (`rows`: mapping.check_upstream's); see the module's docstring."""
    digest = _step_digest(step)
    groups = step.pipeline.groups()
    for want in step.inputs:
        digest.update(f"\0{want}\0".encode())
        if want == step.map_over and mapping.is_item(step_run):
            path, inline = StepRun.objects.values_list("input_path", "input_inline").get(pk=step_run.pk)
            digest.update(content_hash(path, inline).encode())
            continue
        if want in groups:
            sources = [(name, None) for name in groups[want]]
        else:
            sources = [step.pipeline.source(want)]
        for name, part in sources:
            pk, status, path, inline, items_total = rows[name]
            if part is not None:  # one named output of a step: that one's content
                digest.update(f"{name}.{part}:{status}:{content_hash(path, inline, part)}".encode())
                continue
            digest.update(f"{name}:{status}:".encode() + _output_hash(pk, path, inline, items_total).encode())
    return digest.hexdigest()


def params_read(params: ReadingParams, run_params: dict) -> dict:
    """The parameters a step read, with this run's values (as stored on the run)."""
    return {name: run_params.get(name) for name in sorted(params.read)}


def ignored(run_id: int) -> bool:
    """Whether the run was started with "ignore cache"."""
    return Run.objects.filter(pk=run_id, ignore_cache=True).exists()


def lookup(key: str, run_id: int, run_params: dict, custom: bool) -> StepRun | None:
    """The newest succeeded step run with this key whose parameters read equal this run's
    (any, for a key the step gives itself), in another run; None when there is none."""
    candidates = (
        StepRun.objects.filter(cache_key=key, status=Status.SUCCEEDED).exclude(run_id=run_id)
        .filter(Q(output_path__gt="") | Q(output_inline__isnull=False))
        .order_by("-pk").only("pk", "run_id", "output_path", "output_inline", "params_read", "reused_from_id",
                              "items_total")[:CANDIDATES]
    )
    for candidate in candidates:
        read = candidate.params_read or {}
        if custom or all(run_params.get(name) == value for name, value in read.items()):
            return candidate
    return None
