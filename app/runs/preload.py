"""Imported once by a worker's fork server (app.runs.supervisor): Django, the app and every
pipeline module, so that each step's child process starts as a fork of a ready interpreter.
It must not open the database: children open their own connections.

The pipelines' snapshots (their sources read and hashed) are computed here too, once: the
engine compares a run's snapshot with the loaded code before every step, and reading the
sources of a 100-step pipeline in every child cost ~50 ms a step.
"""

import django

django.setup()  # app.apps discovers pipelines/ here

from app.pipelines.registry import registry  # noqa: E402 — needs the apps loaded

for _pipeline in registry.pipelines().values():
    _pipeline.snapshot()
