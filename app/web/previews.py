"""What the step page shows of a step's output: its type and size, and a short look inside.

An output is the step's return value, saved in its format (app.artifacts.save_output: a
pickle, a Parquet file or an .npy file), or several named outputs, each previewed on its own.
Reading a pickle runs the unpickling code of whatever the pipeline returned, in the web
process, so an output is read only up to STEP_OUTPUT_PREVIEW_BYTES, and anything it raises
becomes one line on the page ("could not be read: …"), never an error page. Everything shown
is text the template escapes: a DataFrame's head is cells of text, not the library's own HTML.
"""

import dataclasses

import numpy
from django.conf import settings

from app import artifacts
from app.artifacts import formats
from app.models import StepRun

REPR_CHARS = 2000  # of a dict's, list's or scalar's repr
HEAD_ROWS = 10  # of a DataFrame
CELL_CHARS = 100  # of one cell of a DataFrame's head
MAX_COLUMNS = 30  # of a DataFrame's head


FORMAT_WORDS = {"pickle": "pickled", "parquet": "as Parquet", "npy": "as .npy"}


@dataclasses.dataclass
class Preview:
    name: str = ""  # of a named output
    size: int | None = None  # of the stored file, in bytes; None when it is missing
    stored: str = ""  # "in the database" or the artifact's name
    saved_as: str = ""  # "pickled", "as Parquet", "as .npy"
    type_name: str = ""
    kind: str = ""  # table, array, repr; "" when nothing was read
    shape: str = ""
    dtype: str = ""
    columns: list = dataclasses.field(default_factory=list)
    rows: list = dataclasses.field(default_factory=list)  # (index, [cells]) of a table's head
    more_columns: int = 0  # a table's columns not shown
    text: str = ""  # a repr, cut to REPR_CHARS
    cut_from: int = 0  # the whole repr's length, when it was cut
    problem: str = ""  # why nothing is shown, to follow "The output ": "could not be read: …"
    parts: list = dataclasses.field(default_factory=list)  # the Previews of named outputs


def has_output(step_run: StepRun) -> bool:
    return bool(step_run.output_path) or step_run.output_inline is not None


def of_step(step_run: StepRun) -> Preview | None:
    """The preview of a step run's output, or None when it has none; of named outputs, a
    Preview whose `parts` are theirs."""
    if not has_output(step_run):
        return None
    inline = bytes(step_run.output_inline) if step_run.output_inline is not None else None
    if not artifacts.is_manifest(step_run.output_path):
        return _of_stored(step_run.output_path, inline)
    preview = Preview(stored="in the database" if inline is not None else step_run.output_path)
    try:
        entries = artifacts.manifest(step_run.output_path, inline)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 — a missing or damaged manifest is one line
        preview.problem = "could not be read: " + _one_line(exc)
        return preview
    preview.parts = [_of_stored(path, data, name) for name, path, data, _fmt in entries]
    return preview


def part(step_run: StepRun, name: str) -> tuple[str, bytes | None] | None:
    """(file, inline bytes) of the named output `name` of a step run, or None when it has none."""
    if not artifacts.is_manifest(step_run.output_path):
        return None
    inline = bytes(step_run.output_inline) if step_run.output_inline is not None else None
    for output, path, data, _fmt in artifacts.manifest(step_run.output_path, inline):
        if output == name:
            return path, data
    return None


def _of_stored(path: str, data: bytes | None, name: str = "") -> Preview:
    if data is not None:
        preview = Preview(name=name, size=len(data), stored="in the database", saved_as=FORMAT_WORDS["pickle"])
    else:
        preview = Preview(name=name, size=artifacts.size_of(path), stored=path,
                          saved_as=FORMAT_WORDS[formats.of_name(path).name])
        if preview.size is None:
            preview.problem = "is missing from the artifact store"
            return preview
    limit = settings.STEP_OUTPUT_PREVIEW_BYTES
    if preview.size > limit:
        preview.problem = (
            f"was not read: it is bigger than the {limit:,} bytes a preview reads (STEP_OUTPUT_PREVIEW_BYTES); "
            "download it to look inside"
        )
        return preview
    try:
        value = artifacts.load_output(path, data)
        _describe(preview, value)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 — the pipeline's code runs while unpickling
        preview.kind = ""
        preview.problem = "could not be read: " + _one_line(exc)
    return preview


def _describe(preview: Preview, value):
    kind = type(value)
    preview.type_name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    if _is_table(value):
        _table(preview, value)
    elif isinstance(value, numpy.ndarray | numpy.generic):
        preview.kind = "array"
        preview.shape = " × ".join(str(n) for n in value.shape) or "scalar"
        preview.dtype = str(value.dtype)
        _repr(preview, value)
    else:
        preview.kind = "repr"
        _repr(preview, value)


def _is_table(value) -> bool:
    """A pandas-like DataFrame: a 2-D shape, columns and head()."""
    shape = getattr(value, "shape", None)
    return (
        isinstance(shape, tuple) and len(shape) == 2 and hasattr(value, "columns")
        and callable(getattr(value, "head", None))
    )


def _table(preview: Preview, value):
    preview.kind = "table"
    preview.shape = f"{value.shape[0]:,} rows × {value.shape[1]:,} columns"
    columns = [_cell(column) for column in value.columns]
    preview.columns = columns[:MAX_COLUMNS]
    preview.more_columns = max(0, len(columns) - MAX_COLUMNS)
    head = value.head(HEAD_ROWS)
    if hasattr(head, "itertuples"):  # pandas: the index, then the cells
        rows = ((row[0], row[1:]) for row in head.itertuples(index=True, name=None))
    else:  # polars and the like: rows without an index
        rows = enumerate(head.rows())
    preview.rows = [(_cell(index), [_cell(cell) for cell in cells[:MAX_COLUMNS]]) for index, cells in rows]
    dtypes = getattr(value, "dtypes", None)
    if dtypes is not None and hasattr(dtypes, "tolist"):
        preview.dtype = ", ".join(sorted({str(dtype) for dtype in dtypes.tolist()}))


def _cell(value) -> str:
    text = str(value)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def _repr(preview: Preview, value):
    # NumPy arrays, alone or inside a dict or list, are summarised (first and last 3 items).
    with numpy.printoptions(threshold=60, edgeitems=3, linewidth=100):
        text = repr(value)
    if len(text) > REPR_CHARS:
        preview.cut_from = len(text)
        text = text[:REPR_CHARS]
    preview.text = text


def _one_line(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
    return line if len(line) <= 300 else line[:299] + "…"


def download_name(step_run: StepRun, path: str = "", output: str = "") -> str:
    """The file name a downloaded output is saved as: run-12-train.pkl, run-12-load.parquet,
    run-12-split.X_train.npy for a named output (ASCII only); `path` is the stored file's
    name ("" when kept in the database: a pickle)."""
    name = f"{step_run.step_name}.{output}" if output else step_run.step_name
    safe = "".join(char if char.isascii() and (char.isalnum() or char in "_-.") else "_" for char in name)
    return f"run-{step_run.run_id}-{safe}{formats.of_name(path).suffix}"
