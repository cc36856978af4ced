"""Reference profiles: what a version's training inputs looked like, summarised in numbers
small enough for one database row — no raw data is kept.

`ctx.register_model(..., reference=X_train)` calls `build`. Per feature it keeps:
- count, mean, std, min, max;
- the histogram the population stability index is computed over: `cuts`, the distinct
  deciles 10 … 90 of the feature (so up to 10 bins of about a tenth of the rows each; the two
  outer bins are open-ended, so a recent value beyond the training range still lands in a
  bin), and `shares`, the share of training rows in each bin (counted, not assumed: ties make
  deciles uneven, and a feature with few distinct values gets fewer bins);
- `quantiles`: the feature in QUANTILES points, its quantiles at (i + ½) / QUANTILES. Their
  empirical distribution function is within 1 / (2 · QUANTILES) of the training data's own,
  which is what the Kolmogorov–Smirnov test of app.mlmodels.drift compares recent inputs with.

The predictions' reference is the distribution of the version's answers: class shares for a
classifier (labels as text, in sorted order), or a numeric profile like a feature's for a
regressor. It is `reference_predictions=` when given (say, the predictions on held-out rows),
else the model's own predictions on (up to PREDICT_ROWS rows of) the reference inputs.

Everything a profile refuses — an empty, ragged, non-numeric, non-finite or too wide
reference, names that do not fit — is a ValueError naming what is wrong, so the step fails
with that sentence before anything is stored.
"""

import numbers

import numpy as np

MIN_ROWS = 10
MAX_FEATURES = 1000
QUANTILES = 100
DECILES = [i / 10 for i in range(1, 10)]
PREDICT_ROWS = 10_000  # the model predicts at most this many reference rows (evenly spaced)
MAX_CLASSES = 100  # more distinct non-numeric answers than this: no prediction reference
NUMERIC_CLASSES = 20  # numeric answers with more distinct values than this are a regression's
NAME_LENGTH = 100


def feature_table(reference, feature_names=None) -> tuple[list[str], np.ndarray]:
    """The reference as (feature names, a 2-D float array), or ValueError naming what is
    wrong. A DataFrame's column names are its feature names; otherwise `feature_names`, or
    f0, f1 …"""
    columns = getattr(reference, "columns", None)
    is_frame = columns is not None and hasattr(reference, "to_numpy")
    if is_frame:
        names = [str(c) for c in columns] if feature_names is None else feature_names
        data = reference.to_numpy()
    else:
        names = feature_names
        data = reference
    rows = _rows(data)
    width = len(rows[0])
    if width == 0:
        raise ValueError("reference rows have no features")
    if width > MAX_FEATURES:
        raise ValueError(f"reference has {width} features; at most {MAX_FEATURES} can be profiled")
    names = _names(names, width)
    try:
        matrix = np.asarray(rows, dtype=float)
    except (TypeError, ValueError):
        _raise_not_numeric(rows, names)
        raise
    if matrix.ndim != 2:  # a cell that is itself a list
        _raise_not_numeric(rows, names)
    finite = np.isfinite(matrix)
    if not finite.all():
        i, j = (int(k) for k in np.argwhere(~finite)[0])
        raise ValueError(
            f"reference row {i}, feature {names[j]!r} is {matrix[i, j]:g}: the prediction endpoint refuses "
            f"non-finite inputs, so fill or drop missing values before profiling"
        )
    return names, matrix


def _rows(data):
    if isinstance(data, np.ndarray):
        if data.ndim != 2:
            raise ValueError(
                f"reference must be a table, one row of features per training instance (got a {data.ndim}-D array)"
            )
        rows = data
    elif isinstance(data, (list, tuple)):
        rows = data
        for i, row in enumerate(rows):
            if not isinstance(row, (list, tuple, np.ndarray)):
                raise ValueError(f"reference row {i} is a {type(row).__name__}, not a list of features")
        widths = {len(row) for row in rows}
        if len(widths) > 1:
            first = len(rows[0])
            i = next(i for i, row in enumerate(rows) if len(row) != first)
            raise ValueError(f"reference rows are ragged: row 0 has {first} features, row {i} has {len(rows[i])}")
    else:
        raise ValueError(
            f"reference must be a list of rows, a 2-D numpy array or a DataFrame, not {type(data).__name__}"
        )
    if len(rows) < MIN_ROWS:
        what = "is empty" if len(rows) == 0 else f"has {len(rows)} row{'s' if len(rows) != 1 else ''}"
        raise ValueError(f"reference {what}; at least {MIN_ROWS} training rows are needed to describe a distribution")
    return rows


def _names(names, width) -> list[str]:
    if names is None:
        return [f"f{j}" for j in range(width)]
    names = [str(name) for name in names]
    if len(names) != width:
        raise ValueError(f"{len(names)} feature names for {width} features")
    for name in names:
        if not name or len(name) > NAME_LENGTH:
            raise ValueError(f"feature name {name[:NAME_LENGTH]!r} must be 1 to {NAME_LENGTH} characters")
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"feature name {name!r} is used twice")
        seen.add(name)
    return names


def _raise_not_numeric(rows, names):
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if not isinstance(value, numbers.Real):
                shown = repr(value)
                shown = shown if len(shown) <= 40 else shown[:37] + "…"
                raise ValueError(f"reference row {i}, feature {names[j]!r}: {shown} is not a number")
    raise ValueError("reference values must be numbers")


def bin_index(cuts, values: np.ndarray) -> np.ndarray:
    """The bin of each value: 0 for values ≤ cuts[0], k for cuts[k-1] < value ≤ cuts[k],
    len(cuts) above the last cut."""
    return np.searchsorted(np.asarray(cuts, dtype=float), values, side="left")


def shares(cuts, values: np.ndarray) -> list[float]:
    counts = np.bincount(bin_index(cuts, values), minlength=len(cuts) + 1)
    return [float(c) / len(values) for c in counts]


def describe(values: np.ndarray) -> dict:
    """The profile of one feature's values (1-D, finite, not empty)."""
    cuts = [float(c) for c in np.unique(np.quantile(values, DECILES))]
    probabilities = (np.arange(QUANTILES) + 0.5) / QUANTILES
    return {
        "count": int(len(values)),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "cuts": cuts,
        "shares": shares(cuts, values),
        "quantiles": [float(q) for q in np.quantile(values, probabilities, method="inverted_cdf")],
    }


def describe_predictions(values) -> dict | None:
    """The distribution of a version's answers, or None when they are not one scalar per
    instance (several outputs) or too many distinct labels to count."""
    array = np.asarray(values)
    if array.ndim != 1 or len(array) == 0:
        return None
    try:
        distinct = np.unique(array)
    except TypeError:  # labels of mixed types cannot be sorted
        return None
    if array.dtype.kind in "fiu" and len(distinct) > NUMERIC_CLASSES:
        numbers_ = array.astype(float)
        if not np.isfinite(numbers_).all():
            return None
        return {"kind": "numeric", **describe(numbers_)}
    if len(distinct) > MAX_CLASSES:
        return None
    return _classes(array, distinct)


def _classes(array, distinct) -> dict:
    counts = {str(label): 0 for label in distinct.tolist()}
    for label in array.tolist():
        counts[str(label)] += 1
    return {"kind": "classes", "count": int(len(array)),
            "classes": [[label, count / len(array)] for label, count in counts.items()]}


def build(obj, reference, reference_predictions=None, feature_names=None) -> dict:
    """The profile of a version's reference: {"rows", "features", "predictions"} with
    features a list in feature order, or ValueError naming what is wrong."""
    names, matrix = feature_table(reference, feature_names)
    expected = getattr(obj, "n_features_in_", None)
    if isinstance(expected, int) and expected != matrix.shape[1]:
        raise ValueError(f"reference has {matrix.shape[1]} features; the model expects {expected}")
    features = [{"name": name, **describe(matrix[:, j])} for j, name in enumerate(names)]
    if reference_predictions is not None:
        predictions = describe_predictions(reference_predictions)
        if predictions is None:
            raise ValueError("reference_predictions must be one label or number per instance")
    else:
        predictions = _own_predictions(obj, reference, matrix)
    return {"rows": int(matrix.shape[0]), "features": features, "predictions": predictions}


def _own_predictions(obj, reference, matrix):
    predict = getattr(obj, "predict", None)
    if predict is None:
        return None
    rows = matrix.shape[0]
    chosen = np.linspace(0, rows - 1, min(rows, PREDICT_ROWS)).astype(int)
    sample = reference.iloc[chosen] if hasattr(reference, "iloc") else matrix[chosen]
    try:
        answers = predict(sample)
    except Exception as exc:  # noqa: BLE001 — any failure of user code is reported as a refusal
        raise ValueError(
            f"the model could not predict its reference inputs ({type(exc).__name__}: {str(exc)[:200]}); "
            f"pass the inputs it was trained on, or reference_predictions="
        ) from exc
    return describe_predictions(answers)
