"""The shipped examples, each loaded from pipelines/<name>.py under a module name of
this package (so a second discovery loads them again, like any pipeline module)."""

import importlib.util
import sys
from pathlib import Path

EXAMPLES = ("fanout_demo", "flaky_demo", "segment_report", "train_classifier")
FOLDER = Path(__file__).resolve().parent.parent.parent / "pipelines"

for _name in EXAMPLES:
    _spec = importlib.util.spec_from_file_location(f"{__name__}.{_name}", FOLDER / f"{_name}.py")
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = _module
    _spec.loader.exec_module(_module)
