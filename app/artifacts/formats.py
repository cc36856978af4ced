"""How a step output is written to a file: pickle (the default, anything picklable), Parquet
(a pandas DataFrame or a pyarrow Table, written with pyarrow) or .npy (a numpy array).

Why, and what it costs (bench/outputs.py, a 2,000,000-row DataFrame of three numeric columns
and one of five region names, on this 2-CPU machine's disk, docs/benchmarks.md): Parquet is
not faster here: it took 0.24 s to save and 0.09–0.12 s to load against the pickle's 0.02 s
and 0.04–0.05 s, since a pickle of numeric columns is little more than a copy of their
buffers while Parquet encodes and compresses. It is smaller, 42 MB against 50 MB (73.6 MB with
the names as plain strings), which is what an object store's PUTs and GETs move; and it is
data, not code: loading it runs nothing the pipeline defined (the step page previews outputs
in the web process), any Parquet reader opens it without the pipeline's code or the same
pandas version, and a DataFrame pickled by one pandas version may not load in another. A
numpy array's .npy is its buffer behind a small header, loaded with allow_pickle=False, for
the same reasons. Pickle stays the default for everything else, and for a value of one of
those types that a format cannot hold faithfully.

Chosen by type, when the step declares nothing (`choose`):
- a `pandas.DataFrame` or a `pyarrow.Table` (the classes themselves: a subclass may carry
  what the file would drop) → parquet, when pyarrow is importable;
- a `numpy.ndarray` (the class itself) whose dtype holds no Python objects → npy;
- anything else → pickle.
But a value small enough to be kept in the database stays a pickle there, as every small
output did before: the check is the size of its buffers, which costs nothing to ask
(`ndarray.nbytes`, `DataFrame.memory_usage(deep=False).sum()`, `Table.nbytes`), against the
inline limit (STEP_OUTPUT_INLINE_BYTES). It can be smaller than the pickle (strings count as
8-byte pointers), in which case the pickle goes to a .pkl file as before. A DataFrame whose
column names mix types (pyarrow writes them as strings: [0, "a"] would come back as
["0", "a"]), or that pyarrow cannot convert (a column of mixed objects), is pickled instead,
and the step's log says why.

Declared (`@p.step(format="parquet")`, or per named output): always written in that format,
never kept inline; a value the format cannot take fails the step (`OutputError`) naming the
step, the format and the value's type; a declared parquet without pyarrow says to install it.

A file's name ends with its format's suffix (.pkl, .parquet, .npy), which is how a reader
knows what it holds (`of_name`); a name with any other ending (outputs saved before formats
existed) is a pickle. A Parquet file records whether it was a DataFrame (pyarrow's own
"pandas" metadata, plus ours, `mlops.type`) so it loads back as what was returned.

Import-light: pandas, pyarrow and numpy are looked up in sys.modules, never imported here to
find out what a value is (a value of theirs means they are loaded already); pyarrow is
imported only to write or read a Parquet file, numpy only for an .npy file.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import io
import logging
import pickle
import sys

log = logging.getLogger(__name__)

PARQUET_TYPE_KEY = b"mlops.type"
DATAFRAME = b"pandas.DataFrame"


class OutputError(Exception):
    """A step's output cannot be saved as the step declared it: the message names the step,
    what was declared and what was returned."""


def _module(name: str):
    return sys.modules.get(name)


def _type_name(value) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _is_dataframe(value, exact: bool) -> bool:
    pandas = _module("pandas")
    if pandas is None:
        return False
    return type(value) is pandas.DataFrame if exact else isinstance(value, pandas.DataFrame)


def _is_table(value, exact: bool) -> bool:
    pyarrow = _module("pyarrow")
    if pyarrow is None:
        return False
    return type(value) is pyarrow.Table if exact else isinstance(value, pyarrow.Table)


def has_pyarrow() -> bool:
    """Whether Parquet can be written here (pandas 3 imports pyarrow itself when it is installed)."""
    return _module("pyarrow") is not None or _installed("pyarrow")


@functools.cache
def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


class Format:
    """One way of writing an output to a file."""

    name = ""
    suffix = ""
    takes = ""  # what it takes, for messages: "a numpy array …"

    def of_type(self, value) -> bool:
        """Whether this format is chosen for the value's type (the classes themselves)."""
        return False

    def unfit(self, value, exact: bool = False) -> str | None:
        """Why `value` cannot be written in this format (a sentence), or None when it can.
        `exact`: the type itself, not a subclass (the choice by type)."""
        return None

    def in_memory_bytes(self, value) -> int:
        """What the value's buffers take, cheaply: compared with the inline limit."""
        return 0

    def write(self, value, path: str):
        raise NotImplementedError

    def read(self, source):
        """Load from a path on disk or a file opened for reading."""
        raise NotImplementedError

    def dumps(self, value) -> bytes:
        raise NotImplementedError

    def loads(self, data: bytes):
        raise NotImplementedError


class Pickle(Format):
    name, suffix, takes = "pickle", ".pkl", "anything picklable"

    def write(self, value, path):
        with open(path, "wb") as handle:
            pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)

    def read(self, source):
        if isinstance(source, str):
            with open(source, "rb") as handle:
                return pickle.load(handle)
        return pickle.load(source)

    def dumps(self, value):
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data):
        return pickle.loads(data)


class Parquet(Format):
    name, suffix, takes = "parquet", ".parquet", "a pandas DataFrame or a pyarrow Table"

    def of_type(self, value):
        return _is_dataframe(value, exact=True) or _is_table(value, exact=True)

    def unfit(self, value, exact=False):
        if not (_is_dataframe(value, exact) or _is_table(value, exact)):
            return f"parquet takes {self.takes}"
        if not has_pyarrow():
            return "writing parquet needs pyarrow, which is not installed here: pip install pyarrow"
        if _is_dataframe(value, exact=False):
            kinds = {type(name) for name in value.columns}
            if len(kinds) > 1:
                return (
                    "parquet keeps column names as strings, and its column names mix "
                    f"{', '.join(sorted(kind.__name__ for kind in kinds))}"
                )
        return None

    def in_memory_bytes(self, value):
        if _is_table(value, exact=False):
            return value.nbytes
        return int(value.memory_usage(index=True, deep=False).sum())

    def table(self, value):
        """The value as a pyarrow Table, marked with what it was; raises what pyarrow raises
        for a DataFrame it cannot convert (before any file is opened)."""
        pyarrow = importlib.import_module("pyarrow")
        if _is_dataframe(value, exact=False):
            table = pyarrow.Table.from_pandas(value)
            return table.replace_schema_metadata({**(table.schema.metadata or {}), PARQUET_TYPE_KEY: DATAFRAME})
        return value

    def write(self, value, path):
        self.write_table(self.table(value), path)

    def write_table(self, table, where):
        parquet = importlib.import_module("pyarrow.parquet")
        parquet.write_table(table, where)

    def read(self, source):
        parquet = importlib.import_module("pyarrow.parquet")
        table = parquet.read_table(source)
        metadata = dict(table.schema.metadata or {})
        if metadata.pop(PARQUET_TYPE_KEY, None) == DATAFRAME:
            return table.to_pandas()
        return table.replace_schema_metadata(metadata or None)

    def dumps(self, value):
        pyarrow = importlib.import_module("pyarrow")
        sink = pyarrow.BufferOutputStream()
        self.write_table(self.table(value), sink)
        return sink.getvalue().to_pybytes()

    def loads(self, data):
        pyarrow = importlib.import_module("pyarrow")
        return self.read(pyarrow.BufferReader(data))


class Npy(Format):
    name, suffix, takes = "npy", ".npy", "a numpy array (numpy.ndarray) whose dtype is not object"

    def of_type(self, value):
        numpy = _module("numpy")
        return numpy is not None and type(value) is numpy.ndarray

    def unfit(self, value, exact=False):
        numpy = _module("numpy")
        if numpy is None or not (type(value) is numpy.ndarray if exact else isinstance(value, numpy.ndarray)):
            return f"npy takes {self.takes}"
        if value.dtype.hasobject:
            return f"npy takes {self.takes}, and this one's dtype is {value.dtype} (its items are Python objects)"
        return None

    def in_memory_bytes(self, value):
        return value.nbytes

    def write(self, value, path):
        numpy = importlib.import_module("numpy")
        # A file object: given a path, numpy.save adds ".npy" to a name that lacks it.
        with open(path, "wb") as handle:
            numpy.save(handle, numpy.asarray(value), allow_pickle=False)

    def read(self, source):
        numpy = importlib.import_module("numpy")
        return numpy.load(source, allow_pickle=False)

    def dumps(self, value):
        buffer = io.BytesIO()
        importlib.import_module("numpy").save(buffer, value, allow_pickle=False)
        return buffer.getvalue()

    def loads(self, data):
        return self.read(io.BytesIO(data))


PICKLE, PARQUET, NPY = Pickle(), Parquet(), Npy()
FORMATS = {fmt.name: fmt for fmt in (PICKLE, PARQUET, NPY)}
_BY_SUFFIX = {fmt.suffix: fmt for fmt in FORMATS.values()}


def of_name(name: str) -> Format:
    """The format of a stored file, from its name's suffix; a pickle when it has none of ours."""
    dot = name.rfind(".")
    return _BY_SUFFIX.get(name[dot:], PICKLE) if dot > name.rfind("/") else PICKLE


def choose(value, inline_max: int, label: str) -> Format:
    """The format of an output whose step declared none (see the module's docstring);
    `label` names it in the log line that says why a DataFrame is pickled."""
    for fmt in (PARQUET, NPY):
        if not fmt.of_type(value):
            continue
        if fmt.in_memory_bytes(value) <= inline_max:
            return PICKLE
        reason = fmt.unfit(value, exact=True)
        if reason is None:
            return fmt
        if fmt is PARQUET and has_pyarrow():  # without pyarrow, pickling is what was asked
            log.warning("%s returned a DataFrame that Parquet cannot hold (%s); it is saved as a pickle", label, reason)
        return PICKLE
    return PICKLE


def declared(fmt_name: str, value, label: str) -> Format:
    """The declared format, checked against the value; OutputError naming `label` (the step,
    or "step 'split', output 'X_train'") when it cannot take it."""
    fmt = FORMATS[fmt_name]
    reason = fmt.unfit(value)
    if reason is not None:
        raise OutputError(f"{label} declares format={fmt_name!r}, but returned a {_type_name(value)}; {reason}")
    return fmt


def prepared(fmt: Format, value, label: str, chosen: bool):
    """What `fmt.write` is given: for Parquet, the pyarrow Table (converted before any file is
    opened). A DataFrame pyarrow cannot convert is pickled when the format was chosen by type
    (the log says why), and fails the step when it was declared. Returns (format, value)."""
    if fmt is not PARQUET:
        return fmt, value
    pyarrow = importlib.import_module("pyarrow")
    try:
        return fmt, fmt.table(value)
    except (pyarrow.ArrowException, TypeError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if not chosen:
            raise OutputError(f"{label} declares format='parquet', but pyarrow cannot convert it ({reason})") from exc
        log.warning("%s returned a DataFrame that Parquet cannot hold (%s); it is saved as a pickle", label, reason)
        return PICKLE, value


def write_prepared(fmt: Format, value, path: str):
    """Write what `prepared` gave."""
    if fmt is PARQUET:
        fmt.write_table(value, path)
    else:
        fmt.write(value, path)
