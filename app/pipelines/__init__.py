"""The pipeline API: what data scientists write against, and how their modules are loaded.

A pipeline module needs one line::

    from app.pipelines import Params, param, pipeline

and, to write models in a format of its own, `ModelFormat` and `register_format` from here
too. Nothing in this package imports Django: the definitions (`registry`), typed parameters
(`params`), the DAG algorithms (`graph`) and the test harness (`local`: `pipe.run_local()`)
are plain Python. Django finds them at start-up
(app.apps discovers `pipelines/`) and `checks` turns definition problems into system checks.
"""

from app.pipelines.local import LocalRun, StepFailed
from app.pipelines.params import DefinitionError, ParamError, Params, param
from app.pipelines.registry import Pipeline, Step, pipeline, skip
from app.tracking.formats import ModelFormat, register_format

__all__ = [
    "pipeline", "Params", "param", "Pipeline", "Step", "ParamError", "DefinitionError", "ModelFormat",
    "register_format", "LocalRun", "StepFailed", "skip",
]
