"""Serving predictions from the deployed version of a model.

Each process keeps the model object of the live deployment of each model name. A request
reads which deployment is live (one indexed query), and loads that version from the
artifact store only when it is not the one already held. The held entry is one immutable
tuple swapped in a single assignment, and a request predicts with the entry it looked up,
so its answer always comes from one version, named in the response. A deploy in any process
is therefore seen by the next request in every process, without a restart.

The same query reads the candidate on trial, if any (app.mlmodels.trials): a canary answers
its share of requests; a shadow answers a copy of each request on a thread of its own, off
the request path. Every request is logged (app.mlmodels.predlog), without waiting for it.
"""

import logging
import math
import os
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from app import artifacts
from app.mlmodels import predlog
from app.models import Deployment, ModelVersion, RegisteredModel, Role, Trial, TrialMode
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
    deployment_id: int  # the deployment, or the trial for a candidate
    file_path: str
    name: str
    version: int
    version_id: int
    n_features: int | None
    model: Any


@dataclass(frozen=True)
class Live:
    """What one request reads: the model and its live version, and the candidate in shadow
    or canary if there is one."""

    model_id: int
    deployment_id: int | None
    version_id: int | None
    file_path: str | None
    trial_id: int | None
    trial_version_id: int | None
    trial_mode: str | None
    trial_percent: int
    trial_file_path: str | None


_held: dict[tuple[str, str], Loaded] = {}
_loading = threading.Lock()

# Every request asks which deployment is live (and which candidate is on trial); as SQL this
# costs a tenth of building the same query with the ORM (bench/predict_latency.py).
LIVE_SQL = (
    f"SELECT m.id, m.live_id, d.version_id, v.file_path, m.trial_id, t.version_id, t.mode, t.percent, tv.file_path"
    f" FROM {RegisteredModel._meta.db_table} m"
    f" LEFT JOIN {Deployment._meta.db_table} d ON d.id = m.live_id"
    f" LEFT JOIN {ModelVersion._meta.db_table} v ON v.id = d.version_id"
    f" LEFT JOIN {Trial._meta.db_table} t ON t.id = m.trial_id"
    f" LEFT JOIN {ModelVersion._meta.db_table} tv ON tv.id = t.version_id WHERE m.name = %s"
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


def read_live(name: str) -> Live:
    """The live deployment and the trial of a model name (one query), or UnknownModel."""
    with connection.cursor() as cursor:
        cursor.execute(LIVE_SQL, [name])
        row = cursor.fetchone()
    if row is None:
        raise UnknownModel(f"there is no model named {name!r}")
    return Live(*row[:7], row[7] or 0, row[8])


def held(name: str, slot: str, key_id: int, version_id: int, file_path: str) -> Loaded:
    """The model object of a version, loaded once per process per deployment (slot "live")
    or trial (slot "trial"); ModelUnavailable if it cannot be loaded."""
    key = (key_id, file_path)
    entry = _held.get((name, slot))
    if entry is not None and (entry.deployment_id, entry.file_path) == key:
        return entry
    with _loading:
        entry = _held.get((name, slot))
        if entry is not None and (entry.deployment_id, entry.file_path) == key:
            return entry
        version = ModelVersion.objects.select_related("model").get(pk=version_id)
        try:
            model = load_version(version)
        except Exception as exc:
            log.exception("cannot load %s", version)
            raise ModelUnavailable(
                f"the deployed {version} cannot be loaded ({exc}); an operator should redeploy or roll back"
            ) from None
        entry = Loaded(key_id, file_path, name, version.version, version.pk, version.n_features, model)
        _held[(name, slot)] = entry
    return entry


def live_model(name: str) -> Loaded:
    """The live deployment of a model name, loaded once per process per deployment."""
    live = read_live(name)
    return _live_of(name, live)


def _live_of(name: str, live: Live) -> Loaded:
    if live.deployment_id is None:
        raise NothingDeployed(f"no version of {name!r} is deployed; deploy one on its model page first")
    # A redeploy is a new deployment of the same file: it is loaded again.
    return held(name, "live", live.deployment_id, live.version_id, live.file_path)


def candidate(name: str, live: Live) -> Loaded:
    """The version on trial (shadow or canary), loaded once per process per trial."""
    return held(name, "trial", live.trial_id, live.trial_version_id, live.trial_file_path)


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


def answer(loaded: Loaded, instances: list):
    """The predictions of `loaded` for checked instances, as JSON-ready values."""
    try:
        return _plain(loaded.model.predict(instances))
    except (ValueError, TypeError) as exc:
        raise BadInstances(f"the model rejected the instances: {exc}") from None
    except Exception as exc:
        log.exception("v%s of %s failed to predict", loaded.version, loaded.name)
        raise ModelUnavailable(f"v{loaded.version} of {loaded.name!r} failed to predict ({type(exc).__name__})") from None


def predict(name: str, payload, token_name: str = "") -> dict:
    """Answer a prediction request from the live version of `name` — or, for a canary's
    share of requests, from the candidate — and log it (app.mlmodels.predlog). The answer
    names the version that served it and carries the request's id (for feedback)."""
    started = time.perf_counter()
    uid = uuid.uuid4()
    live = read_live(name)  # an unknown model is not logged: there is nothing to log it under
    served, role, instances, predictions = None, Role.LIVE, None, None
    try:
        served = _live_of(name, live)
        if live.trial_mode == TrialMode.CANARY and random.random() * 100 < live.trial_percent:
            try:
                served, role = candidate(name, live), Role.CANARY
            except ModelUnavailable:
                log.warning("the canary of %s cannot be loaded; the live version answers", name)
        instances = check_instances(payload, served.n_features)
        predictions = answer(served, instances)
    except ServingError as exc:
        _record(uid, live, served, role, started, exc.status, token_name, instances, None, error=str(exc))
        raise
    sampled = _record(uid, live, served, role, started, 200, token_name, instances, predictions)
    if live.trial_mode == TrialMode.SHADOW:
        shadow.submit(name, live, instances, predictions, uid, token_name, sampled)
    return {"id": str(uid), "model": name, "version": served.version, "predictions": predictions}


def _record(uid, live, served, role, started, status, token_name, instances, predictions, error="") -> bool:
    sampled = status == 200 and predlog.prediction_log.sample()
    predlog.prediction_log.record(
        uid=uid, model_id=live.model_id, version_id=served.version_id if served else live.version_id, role=role,
        at=timezone.now(), latency_ms=(time.perf_counter() - started) * 1000, status=status,
        n_instances=len(instances) if instances else 0, token_name=token_name[:100], error=error[:300],
        sampled=sampled, inputs=instances if sampled else None, outputs=predictions,
    )
    return sampled


class Shadow:
    """The candidate in shadow answers a copy of each live request on a thread of its own,
    from a bounded queue: a slow or broken candidate never slows, changes or fails the live
    answer (a full queue drops the copy, counted in `dropped` and logged). Its answers are
    logged with the share of instances on which they agree with the live answer. A thread
    that has answered nothing for STUCK_SECONDS while its queue is full (a call that never
    returns) is left behind and a new one takes the copies that come next."""

    STUCK_SECONDS = 60.0

    def __init__(self):
        self.queue = None
        self.thread = None
        self.pid = None
        self.dropped = 0
        self.progress_at = time.monotonic()
        self.lock = threading.Lock()

    def submit(self, name, live, instances, predictions, uid, token_name, sampled):
        own = None
        try:
            own = self._ensure_thread()
            own.put_nowait((name, live, instances, predictions, uid, token_name, sampled))
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("the shadow of %s dropped %d copies: its queue (SHADOW_QUEUE=%d) is full",
                            name, self.dropped, own.maxsize)
            if time.monotonic() - self.progress_at > self.STUCK_SECONDS:
                log.error("the shadow thread answered nothing for %.0f s; a new one takes over",
                          time.monotonic() - self.progress_at)
                self.reset()
        except Exception:  # noqa: BLE001 — the shadow must never fail the live answer
            log.exception("the shadow copy of a request to %s could not be queued", name)

    def reset(self):
        """Leave the current thread and its queue behind; the next copy starts a new one. An
        idle thread ends at once, closing its database connection; a stuck one ends when it
        gets to the end of its queue (a daemon: at the latest with the process)."""
        with self.lock:
            old, self.thread, self.queue, self.progress_at = self.queue, None, None, time.monotonic()
        if old is not None:
            try:
                old.put_nowait(None)
            except queue.Full:
                pass

    def _ensure_thread(self) -> queue.Queue:
        """The queue of this process's live shadow thread (started if there is none). Read
        with the thread under the lock: a reset meanwhile cannot leave a copy on no queue."""
        with self.lock:
            if self.pid == os.getpid() and self.thread is not None and self.thread.is_alive():
                return self.queue
            self.progress_at = time.monotonic()
            self.pid = os.getpid()
            self.queue = queue.Queue(maxsize=settings.SHADOW_QUEUE)
            self.thread = threading.Thread(target=self._loop, args=(self.queue,), name="shadow", daemon=True)
            self.thread.start()
            return self.queue

    def _loop(self, own: queue.Queue):
        # After a reset, this thread finishes with its own queue.
        while True:
            job = own.get()
            if job is None:  # left behind (reset)
                own.task_done()
                connection.close()
                return
            try:
                self.run(*job)
            except Exception:  # noqa: BLE001 — one bad copy must not stop the shadow
                log.exception("a shadow prediction failed to run")
            try:
                close_old_connections()
            except Exception:  # noqa: BLE001 — a database outage must not end the thread either
                log.warning("the shadow thread could not check its database connection", exc_info=True)
            own.task_done()
            if own is self.queue:
                self.progress_at = time.monotonic()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued copy has been answered (tests, and a clean shutdown);
        False if some are still waiting after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.queue is not None and self.queue.unfinished_tasks:
            if time.monotonic() > deadline or self.thread is None or not self.thread.is_alive():
                return False
            time.sleep(0.01)
        return True

    def run(self, name, live, instances, live_predictions, pair, token_name, sampled):
        """Answer one copied request with the candidate and log it (also called directly)."""
        started = time.perf_counter()
        uid = uuid.uuid4()
        status, error, predictions, loaded = 200, "", None, None
        try:
            loaded = candidate(name, live)
            predictions = answer(loaded, instances)
        except ServingError as exc:
            status, error = exc.status, str(exc)
        predlog.prediction_log.record(
            uid=uid, model_id=live.model_id, version_id=loaded.version_id if loaded else live.trial_version_id,
            role=Role.SHADOW, at=timezone.now(), latency_ms=(time.perf_counter() - started) * 1000, status=status,
            n_instances=len(instances), token_name=token_name[:100], error=error[:300], sampled=sampled,
            inputs=instances if sampled else None, outputs=predictions, pair=pair,
            agreement=agreement(live_predictions, predictions) if predictions is not None else None,
        )


def agreement(a: list, b: list) -> float:
    """The share of instances on which two answers agree (numbers: within 1e-6 relative)."""
    if not a or len(a) != len(b):
        return 0.0
    same = sum(1 for x, y in zip(a, b, strict=True) if _same(x, y))
    return same / len(a)


def _same(x, y) -> bool:
    if isinstance(x, float) or isinstance(y, float):
        try:
            return math.isclose(float(x), float(y), rel_tol=1e-6, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return x == y


shadow = Shadow()


def _plain(predictions):
    """numpy arrays and scalars as JSON-ready Python values."""
    tolist = getattr(predictions, "tolist", None)
    return tolist() if tolist else list(predictions)
