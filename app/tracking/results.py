"""What a step attaches to its run besides its output: metrics (checked here), small result
tables and confusion matrices, each checked and turned into plain JSON before it is stored.
Tables logged by the step that registers a model version belong to that version too
(app.tracking.versions); the pages draw them with app.web.tables."""

import math
from collections import Counter

from django.db.models import F

MAX_ROWS = 500
MAX_COLUMNS = 50
MAX_LABELS = 50
MAX_TEXT = 200


def _cell(value, where):
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not a finite number")
        return value
    item = getattr(value, "item", None)  # numpy scalars
    if item is not None:
        return _cell(item(), where)
    text = str(value)
    if len(text) > MAX_TEXT:
        raise ValueError(f"{where}: text longer than {MAX_TEXT} characters")
    return text


def check_metric(name, value) -> float:
    """A metric's value as a finite float, or ValueError naming what is wrong."""
    if not isinstance(name, str) or not name or len(name) > 100:
        raise ValueError(f"metric name {name!r} must be a non-empty string of at most 100 characters")
    if isinstance(value, bool):
        raise ValueError(f"metric {name!r}: value {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"metric {name!r}: value {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"metric {name!r}: value {value!r} is not finite")
    return number


def check_name(name) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise ValueError(f"table name {name!r} must be a non-empty string of at most 100 characters")
    return name.strip()


def table_data(rows, columns=None) -> dict:
    """{"columns": [...], "rows": [[...], ...]} from a list of dicts (columns from their
    keys, in order of first appearance) or a list of lists with `columns` given."""
    rows = list(rows)
    if len(rows) > MAX_ROWS:
        raise ValueError(f"a result table holds at most {MAX_ROWS} rows; this one has {len(rows)}")
    if columns is None:
        if not all(isinstance(row, dict) for row in rows):
            raise ValueError("give `columns`, or rows as dicts of column name → value")
        columns = list(dict.fromkeys(key for row in rows for key in row))
        rows = [[row.get(column) for column in columns] for row in rows]
    columns = [str(column) for column in columns]
    if not columns or len(columns) > MAX_COLUMNS:
        raise ValueError(f"a result table needs 1 to {MAX_COLUMNS} columns; this one has {len(columns)}")
    cells = []
    for i, row in enumerate(rows):
        row = list(row.values()) if isinstance(row, dict) else list(row)
        if len(row) != len(columns):
            raise ValueError(f"row {i} has {len(row)} values for {len(columns)} columns")
        cells.append([_cell(value, f"row {i}, column {columns[j]!r}") for j, value in enumerate(row)])
    return {"columns": columns, "rows": cells}


def confusion_data(y_true, y_pred, labels=None, display_labels=None) -> dict:
    """{"labels": [...], "matrix": [[count, ...], ...]}: rows are true classes, columns the
    predicted ones, like scikit-learn's confusion_matrix."""
    truth = [_cell(v, "y_true") for v in y_true]
    predicted = [_cell(v, "y_pred") for v in y_pred]
    if len(truth) != len(predicted):
        raise ValueError(f"y_true has {len(truth)} values but y_pred has {len(predicted)}")
    if labels is None:
        labels = sorted(set(truth) | set(predicted), key=lambda v: (str(type(v)), v))
    else:
        labels = [_cell(v, "labels") for v in labels]
    if not labels or len(labels) > MAX_LABELS:
        raise ValueError(f"a confusion matrix needs 1 to {MAX_LABELS} classes; this one has {len(labels)}")
    names = list(display_labels) if display_labels is not None else labels
    if len(names) != len(labels):
        raise ValueError(f"{len(names)} display labels for {len(labels)} classes")
    counts = Counter(zip(truth, predicted))
    matrix = [[counts[(t, p)] for p in labels] for t in labels]
    return {"labels": [str(_cell(name, "display_labels")) for name in names], "matrix": matrix}


def of_recorded_attempts(queryset):
    """Metrics or result tables, only those of the attempt each step run recorded: what a
    failed or lost attempt logged before another one replaced it is not shown or counted."""
    return queryset.filter(attempt=F("step_run__attempt"))
