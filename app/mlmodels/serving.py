"""Serving predictions from the deployed version of a model.

Each process keeps the model object of the live deployment of each model name. A request
reads which deployment is live (one indexed query), and loads that version from the
artifact store only when it is not the one already held. The held entry is one immutable
tuple swapped in a single assignment, and a request predicts with the entry it looked up,
so its answer always comes from one version, named in the response. A deploy in any process
is therefore seen by the next request in every process, without a restart.
"""

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

from django.db import connection

from app import artifacts
from app.models import Deployment, ModelVersion, RegisteredModel
from app.tracking import formats

log = logging.getLogger(__name__)

MAX_INSTANCES = 10_000


class ServingError(Exception):
    """A request that cannot be answered; `status` is the HTTP status to answer with."""

    status = 400


class UnknownModel(ServingError):
    status = 404


class NothingDeployed(ServingError):
    status = 409


class BadInstances(ServingError):
    status = 400


class ModelUnavailable(ServingError):
    """The live version cannot be loaded or failed unexpectedly: an operator must act."""

    status = 503


@dataclass(frozen=True)
class Loaded:
    deployment_id: int
    file_path: str
    name: str
    version: int
    n_features: int | None
    model: Any


_held: dict[str, Loaded] = {}
_loading = threading.Lock()

# Every request asks which deployment is live; as SQL this costs a tenth of building the
# same query with the ORM (bench/predict_latency.py).
LIVE_SQL = (
    f"SELECT m.live_id, d.version_id, v.file_path FROM {RegisteredModel._meta.db_table} m"
    f" LEFT JOIN {Deployment._meta.db_table} d ON d.id = m.live_id"
    f" LEFT JOIN {ModelVersion._meta.db_table} v ON v.id = d.version_id WHERE m.name = %s"
)


def load_version(version: ModelVersion):
    """The model object of a version, read from the artifact store by the version's own
    record (never from a path a request supplies)."""
    fmt = formats.get_format(version.format)
    try:
        with artifacts.local_copy(version.file_path) as path:  # a download when the store is remote
            return fmt.load(str(path))
    except artifacts.MissingArtifact:
        raise artifacts.MissingArtifact(f"the file of {version} is missing from the artifact store") from None


def live_model(name: str) -> Loaded:
    """The live deployment of a model name, loaded once per process per deployment."""
    with connection.cursor() as cursor:
        cursor.execute(LIVE_SQL, [name])
        row = cursor.fetchone()
    if row is None:
        raise UnknownModel(f"there is no model named {name!r}")
    deployment_id, version_id, file_path = row
    if deployment_id is None:
        raise NothingDeployed(f"no version of {name!r} is deployed; deploy one on its model page first")
    # A redeploy is a new deployment of the same file: it is loaded again.
    key = (deployment_id, file_path)
    held = _held.get(name)
    if held is not None and (held.deployment_id, held.file_path) == key:
        return held
    with _loading:
        held = _held.get(name)
        if held is not None and (held.deployment_id, held.file_path) == key:
            return held
        version = ModelVersion.objects.select_related("model").get(pk=version_id)
        try:
            model = load_version(version)
        except Exception as exc:
            log.exception("cannot load %s", version)
            raise ModelUnavailable(
                f"the deployed {version} cannot be loaded ({exc}); an operator should redeploy or roll back"
            ) from None
        held = Loaded(deployment_id, file_path, name, version.version, version.n_features, model)
        _held[name] = held
    return held


def check_instances(payload, n_features: int | None) -> list:
    """The instances of a request body, or BadInstances naming what is wrong."""
    if not isinstance(payload, dict) or "instances" not in payload:
        raise BadInstances('the body must be a JSON object with "instances": a list of feature lists')
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadInstances('"instances" must be a non-empty list of feature lists')
    if len(instances) > MAX_INSTANCES:
        raise BadInstances(f'"instances" has {len(instances)} rows; at most {MAX_INSTANCES} per request')
    for i, row in enumerate(instances):
        if not isinstance(row, list):
            raise BadInstances(f"instance {i} is not a list of features")
        if n_features is not None and len(row) != n_features:
            raise BadInstances(f"instance {i} has {len(row)} features; the model expects {n_features}")
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise BadInstances(f"instance {i}, feature {j}: {value!r} is not a finite number")
    if n_features is None and len({len(row) for row in instances}) > 1:
        raise BadInstances("instances have different numbers of features")
    return instances


def predict(name: str, payload) -> dict:
    """Answer a prediction request from the live version of `name`."""
    loaded = live_model(name)
    instances = check_instances(payload, loaded.n_features)
    try:
        predictions = loaded.model.predict(instances)
    except (ValueError, TypeError) as exc:
        raise BadInstances(f"the model rejected the instances: {exc}") from None
    except Exception as exc:
        log.exception("v%s of %s failed to predict", loaded.version, name)
        raise ModelUnavailable(f"v{loaded.version} of {name!r} failed to predict ({type(exc).__name__})") from None
    return {"model": name, "version": loaded.version, "predictions": _plain(predictions)}


def _plain(predictions):
    """numpy arrays and scalars as JSON-ready Python values."""
    tolist = getattr(predictions, "tolist", None)
    return tolist() if tolist else list(predictions)
