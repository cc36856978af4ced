"""Step outputs in the artifact store: one value, or several named outputs, each in its format
(app.artifacts.formats), with one reference per step run: StepRun.output_path/output_inline.

- One value: `runs/<run>/<step>.<suffix>` (`.pkl`, `.parquet`, `.npy`; a later attempt adds
  its number, `train.2.pkl`, so an attempt given up for dead that finishes late cannot
  overwrite the output of the attempt that replaced it). A small pickle is not written at all
  but returned, to be kept in the database (output_path "", output_inline the pickle).
- Named outputs (`@p.step(outputs=[...])`): each output saved as one value would be, as
  `runs/<run>/<step>.<output>.<suffix>` (inline when small), then a manifest,
  `runs/<run>/<step>.outputs`: a pickled dict of plain values (name, file, inline bytes,
  format of each output, in the declared order). It is written only once every output is
  saved, so a manifest never names a part that is not there. A small manifest is kept in the
  database like a small output, but with its name in output_path (that name is what says
  "a manifest"): output_path "runs/3/split.outputs", output_inline its bytes.

Names cannot collide: step and output names are identifiers (no dots), attempt numbers are
digits, and `.outputs` is no format's suffix. Every file of a run is under `runs/<run>/`,
which is what retention deletes whole. `load_output(…, part=name)` reads the manifest and that
one output only: a step that needs one array of a split does not read the others.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
from pathlib import Path

from app.artifacts import formats
from app.artifacts.formats import OutputError
from app.artifacts.store import (
    ArtifactError,
    MissingArtifact,
    Placement,
    delete,
    is_local,
    local_copy,
    open_artifact,
    resolve,
    write_atomically,
)

log = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".outputs"


def save_output(
    run_id: int, step_name: str, value, attempt: int = 1, inline_max: int = 0, *, format: str | None = None,
    outputs: dict | None = None,
) -> tuple[str, bytes | None]:
    """Persist a step's return value. Returns `(name, None)`: its file in the store; or, for
    a pickle of at most `inline_max` bytes, `("", the pickle)` for the caller to keep in the
    database, and no file at all (creating one measured 0.4–1.5 ms on this disk, more than
    the rest of a step's bookkeeping; in an object store a PUT and later a GET).

    `format`: the step's declared format (else chosen by type, see app.artifacts.formats).
    `outputs`: the step's named outputs, {name: declared format or None}, in order: `value`
    is split into them (`split`), each saved on its own, then the manifest; returns the
    manifest's `(name, None)` or, when small, `(name, its bytes)`."""
    base = f"runs/{int(run_id)}/{step_name}" + ("" if attempt == 1 else f".{int(attempt)}")
    if outputs is None:
        path, inline, _fmt = _save_one(base, value, format, inline_max, f"step {step_name!r}", part=False)
        return path, inline
    entries = []
    try:
        for name, part in split(step_name, value, list(outputs)).items():
            path, inline, fmt = _save_one(
                f"{base}.{name}", part, outputs[name], inline_max, f"step {step_name!r}, output {name!r}", part=True
            )
            entries.append((name, path, inline, fmt.name))
        body = pickle.dumps({"outputs": entries}, protocol=pickle.HIGHEST_PROTOCOL)
        name = base + MANIFEST_SUFFIX
        if len(body) <= inline_max:
            return name, body
        write_atomically(name, lambda path: Path(path).write_bytes(body))
        return name, None
    except BaseException:
        _remove(entries)  # no manifest names them: nothing would ever read them
        raise


def split(step_name: str, value, names: list[str]) -> dict:
    """A step's return value as its named outputs, by name in the declared order: a dict with
    exactly those keys, or a tuple of as many values in that order. OutputError otherwise,
    naming what was expected and what came."""
    expected = ", ".join(names)
    if isinstance(value, dict):
        if len(value) == len(names) and all(name in value for name in names):
            return {name: value[name] for name in names}
        missing = [name for name in names if name not in value]
        extra = [repr(key) for key in value if key not in names]
        details = "; ".join(
            part for part in (
                f"missing: {', '.join(missing)}" if missing else "",
                f"not declared: {', '.join(extra)}" if extra else "",
            ) if part
        )
        got = ", ".join(repr(key) for key in value) or "none"
        raise OutputError(
            f"step {step_name!r} declares the outputs {expected}, but returned a dict with the keys {got} ({details})"
        )
    if isinstance(value, tuple):
        if len(value) == len(names):
            return dict(zip(names, value, strict=True))
        raise OutputError(
            f"step {step_name!r} declares {len(names)} outputs ({expected}), but returned a tuple of {len(value)}"
        )
    kind = type(value)
    raise OutputError(
        f"step {step_name!r} declares the outputs {expected}, but returned a {kind.__module__}.{kind.__qualname__}: "
        f"return a dict with those keys, or a tuple of {len(names)} values in that order"
    )


def _save_one(base: str, value, declared: str | None, inline_max: int, label: str, part: bool):
    """Save one value as `base` + its format's suffix; (name, inline, format)."""
    if declared is None:
        fmt, chosen = formats.choose(value, inline_max, label), True
    else:
        fmt, chosen = formats.declared(declared, value, label), False
    fmt, prepared = formats.prepared(fmt, value, label, chosen)
    if fmt is formats.PICKLE:
        try:
            path, inline = _save_pickle(base + fmt.suffix, value, inline_max)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            if not part:
                raise  # the engine says it of the whole output (app.runs.engine._save_output)
            kind = type(value)
            raise OutputError(
                f"{label} is a {kind.__module__}.{kind.__qualname__}, which cannot be saved: "
                f"it is pickled ({type(exc).__name__}: {exc})"
            ) from exc
        return path, inline, fmt
    name = base + fmt.suffix
    write_atomically(name, lambda path: formats.write_prepared(fmt, prepared, path))
    return name, None, fmt


def _save_pickle(name: str, value, inline_max: int) -> tuple[str, bytes | None]:
    placement = Placement(name)
    sink = _Spill(inline_max, placement)
    try:
        pickle.dump(value, sink, protocol=pickle.HIGHEST_PROTOCOL)
        if sink.file is None:
            return "", bytes(sink.held)
        sink.file.close()
        placement.place()
        return name, None
    finally:
        if sink.file is not None:
            sink.file.close()
        placement.discard()


def _remove(entries):
    for _name, path, _inline, _fmt in entries:
        if path:
            try:
                delete(path)
            except (ArtifactError, OSError) as exc:
                log.warning("could not remove %s, an output no manifest names: %s", path, exc)


class _Spill:
    """What a pickle writes: held in memory while it fits in `limit` bytes, then all of it
    streamed to the placement's temporary file (a large output is never held twice)."""

    def __init__(self, limit: int, placement: Placement):
        self.limit = limit
        self.placement = placement
        self.held = bytearray()
        self.file = None

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if self.file is None:
            if len(self.held) + size <= self.limit:
                self.held += data
                return size
            self.file = open(self.placement.path(), "wb")  # noqa: SIM115 — closed by _save_pickle
            self.file.write(self.held)
            self.held = bytearray()
        self.file.write(data)
        return size


# --- loading -----------------------------------------------------------------------------------


def is_manifest(name: str) -> bool:
    return name.endswith(MANIFEST_SUFFIX)


def manifest(name: str, inline: bytes | None = None) -> list[tuple[str, str, bytes | None, str]] | None:
    """The named outputs of a step run, as saved: (name, file, inline bytes, format) each in
    the declared order; None when `name` is one value, not a manifest."""
    if not is_manifest(name):
        return None
    if inline is None:
        with _opened(name) as handle:
            inline = handle.read()
    return [tuple(entry) for entry in pickle.loads(inline)["outputs"]]


def load_output(name: str, inline: bytes | None = None, part: str | None = None):
    """Load a step output saved by save_output: from `inline` (the bytes it returned to be
    kept in the database) when given, else from the file `name`. Named outputs load as a
    dict by name, or, with `part`, that one output only (the others are not read)."""
    entries = manifest(name, inline)
    if entries is None:
        if part is not None:
            where = name or "the output kept in the database"
            raise ArtifactError(f"{where} is one value, not named outputs: it has no output {part!r}")
        return _load_one(name, inline)
    if part is None:
        return {output: _load_one(path, data) for output, path, data, _fmt in entries}
    for output, path, data, _fmt in entries:
        if output == part:
            return _load_one(path, data)
    names = ", ".join(entry[0] for entry in entries)
    raise ArtifactError(f"the outputs saved as {name!r} have no output {part!r} (they are: {names})")


def _load_one(name: str, inline: bytes | None):
    if inline is not None:
        return pickle.loads(inline)  # only pickles are kept inline
    fmt = formats.of_name(name)
    if fmt is formats.PICKLE:
        with _opened(name) as handle:
            return pickle.load(handle)
    # Parquet and .npy readers want a file they can seek in: the file itself on disk, a
    # download of it from an object store.
    try:
        if is_local():
            path = resolve(name)
            if not path.is_file():
                raise MissingArtifact(name)
            return fmt.read(str(path))
        with local_copy(name) as path:
            return fmt.read(str(path))
    except MissingArtifact:
        raise MissingArtifact(f"the saved output {name!r} is missing from the artifact store") from None


@contextlib.contextmanager
def _opened(name: str):
    try:
        handle = open_artifact(name)
    except MissingArtifact:
        raise MissingArtifact(f"the saved output {name!r} is missing from the artifact store") from None
    with handle:
        yield handle
