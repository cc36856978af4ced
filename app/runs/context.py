"""What a step function receives as `ctx` on a worker (`StepContext`): the run's parameters,
a logger whose records are kept on the step run, and what a step records — metrics, result
tables, model versions, tags. The test harness has the same API without a database
(app.pipelines.local.LocalContext).
"""

from __future__ import annotations

import logging
import time

from app import artifacts
from app.models import Metric, ResultKind, ResultTable, Run, StepRun
from app.runs import tags as run_tags
from app.tracking import results, versions


class RunCancelled(Exception):
    """Raised by `ctx.check_cancelled()` when an operator cancelled the run: the step stops
    and is recorded as cancelled, not failed."""


class StepContext:
    """What a step function receives as its first argument.

    - `ctx.params`: the run's parameters (an instance of the pipeline's Params class)
    - `ctx.logger`: a logger whose records are stored on the step run
    - `ctx.log_metric(name, value)`: record a number shown on the run page
    - `ctx.run_id`, `ctx.step_run_id`, `ctx.attempt`, `ctx.pipeline_name`, `ctx.step_name`,
      `ctx.map_index` (an item of a mapped step: its index; else None)
    - `ctx.artifacts_dir`: a directory for extra files this step writes
    - `ctx.cancel_requested` / `ctx.check_cancelled()`: stop early when the run is cancelled
    - `ctx.register_model(name, obj, metrics={...})`: save a new version of a model
    - `ctx.log_table(name, rows)` / `ctx.log_confusion_matrix(y_true, y_pred)`: small
      results shown on the run page (and on the page of a version this step registers)
    """

    def __init__(self, step_run: StepRun, params):
        self._step_run = step_run
        self.params = params
        self.run_id = step_run.run_id
        self.step_run_id = step_run.pk
        self.attempt = step_run.attempt
        self.pipeline_name = step_run.run.pipeline_name
        self.step_name = step_run.node_name
        # An item of a mapped step: its index among the items (None for any other step).
        self.map_index = int(step_run.step_name[len(self.step_name) + 1:-1]) if step_run.step_name != self.step_name else None
        self._files_as = step_run.step_name
        self.logger = logging.getLogger(f"pipelines.{self.pipeline_name}.{self.step_name}")
        self._cancelled = False
        self._cancel_checked_at = float("-inf")

    @property
    def artifacts_dir(self):
        return artifacts.step_dir(self.run_id, self._files_as)

    @property
    def cancel_requested(self) -> bool:
        """Whether an operator cancelled the run. Cheap to call in a loop: it looks at the
        database at most once a second."""
        now = time.monotonic()
        if not self._cancelled and now - self._cancel_checked_at >= 1.0:
            self._cancel_checked_at = now
            self._cancelled = Run.objects.filter(pk=self.run_id, cancel_requested_at__isnull=False).exists()
        return self._cancelled

    def check_cancelled(self):
        """Raise RunCancelled if the run was cancelled; call it in long loops."""
        if self.cancel_requested:
            raise RunCancelled(f"run #{self.run_id} was cancelled")

    def log_metric(self, name: str, value: float):
        """Record a metric of this run (a finite number under a name of up to 100 characters)."""
        number = results.check_metric(name, value)
        Metric.objects.create(
            step_run=self._step_run, attempt=self.attempt, run_id=self.run_id, name=name, value=number
        )

    def register_model(
        self, name: str, obj, metrics: dict | None = None, format: str = "joblib", *, reference=None,
        reference_predictions=None, feature_names=None,
    ):
        """Save `obj` as the next version of model `name` (1, 2, 3 …) with its metrics; the
        version records this run, step, parameters and pipeline snapshot as its lineage.
        `format` names how the file is written (app.tracking.formats; joblib by default).

        `reference=X_train` (rows of numbers: a list of lists, a 2-D numpy array or a
        DataFrame) records what the training inputs looked like, for drift monitoring: per
        feature summary statistics, histogram bins and quantiles, no raw data. Features are
        named by a DataFrame's columns, else by `feature_names`, else f0, f1 … The
        predictions' reference is `reference_predictions` (say, on held-out rows) if given,
        else the model's own predictions on the reference. A reference that cannot be
        profiled fails the step with the reason, and nothing is registered.
        Returns the version number."""
        return versions.register(
            self._step_run, name, obj, metrics, format, reference=reference,
            reference_predictions=reference_predictions, feature_names=feature_names,
        ).version

    def log_table(self, name: str, rows, columns=None):
        """Attach a small table (up to 500 rows × 50 columns): rows as dicts, or as lists
        with `columns` given. Cells are numbers, text or None."""
        data = results.table_data(rows, columns)
        self._save_result(name, ResultKind.TABLE, data)

    def log_confusion_matrix(self, y_true, y_pred, labels=None, display_labels=None, name="Confusion matrix"):
        """Attach a classifier's confusion matrix (true classes as rows), shown as a heat-map.
        `labels` fixes the classes and their order; `display_labels` names them."""
        data = results.confusion_data(y_true, y_pred, labels, display_labels)
        self._save_result(name, ResultKind.CONFUSION, data)

    def _save_result(self, name, kind, data):
        ResultTable.objects.create(
            run_id=self.run_id, step_run_id=self.step_run_id, attempt=self.attempt, name=results.check_name(name),
            kind=kind, data=data,
        )

    def tag(self, *names: str) -> list[str]:
        """Tag this run: `ctx.tag("env=prod", "team:ml")`. Each tag is 1 to 50 lowercase
        letters, digits and - _ . : = (given text is stripped and lower-cased), at most 20 a
        run; a bad one raises ValueError naming it (failing the step like any exception).
        Tagging twice is harmless. Returns the run's tags."""
        return run_tags.add(self.run_id, names)
