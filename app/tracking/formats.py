"""How model files are written and read. `joblib` (scikit-learn's own format) is the
default; a pipeline module can register another format at import time:

    from app.pipelines import ModelFormat, register_format

    register_format(ModelFormat(name="onnx", suffix=".onnx", save=save_onnx, load=load_onnx))

`save(obj, path)` writes the file, `load(path)` returns an object with `predict(instances)`.
Pipeline modules are imported by every process (web and worker), so a registered format is
known wherever a version is loaded. Files are only ever read from the artifact store, by
model version (app.tracking.versions), never from a path or bytes a request supplies.
"""

from dataclasses import dataclass
from typing import Any, Callable

import joblib


@dataclass(frozen=True)
class ModelFormat:
    name: str
    suffix: str
    save: Callable[[Any, str], None]
    load: Callable[[str], Any]


_formats: dict[str, ModelFormat] = {}


def register_format(fmt: ModelFormat):
    """Make a format available to `ctx.register_model(..., format=fmt.name)`."""
    existing = _formats.get(fmt.name)
    if existing is not None and existing != fmt:
        raise ValueError(f"a model format named {fmt.name!r} is already registered")
    _formats[fmt.name] = fmt


def get_format(name: str) -> ModelFormat:
    try:
        return _formats[name]
    except KeyError:
        known = ", ".join(sorted(_formats))
        raise ValueError(f"unknown model format {name!r} (known formats: {known})") from None


register_format(ModelFormat(
    name="joblib", suffix=".joblib", save=lambda obj, path: joblib.dump(obj, path), load=joblib.load,
))
