"""The prediction log: one row per prediction request, written off the request path.

A request appends one small record to this process's buffer (a deque append under no
lock of ours: O(1), nothing to wait for) and goes on; a daemon thread of the process writes
the buffer every PREDICTION_LOG_FLUSH_SECONDS in one `bulk_create`. Nothing the log does can
fail or slow a prediction:
- a full buffer (the database slower than the traffic for long) drops the newest records,
  counted in `dropped` and logged once per flush, instead of growing without bound;
- a write that fails (the database down) keeps the batch for the next try as long as the
  buffer has room, and logs why; a record the database refuses as it is while it takes the
  others (its model deleted meanwhile) is dropped and logged, never retried for ever in
  front of them;
- the process's last records are written at exit (gunicorn's graceful stop and restarts).

Sampling is decided per request (PREDICTION_SAMPLE_RATE): a sampled request keeps its first
PREDICTION_SAMPLE_MAX_INSTANCES instances for drift (app.mlmodels.drift), at most
PREDICTION_SAMPLES_PER_DAY requests per version and day (counted per process from the
database, so several processes overshoot by at most a flush each). Outputs are kept for
feedback whenever a request has at most PREDICTION_SAMPLE_MAX_INSTANCES instances.

Outside a web server (the test client, management commands) nothing starts the thread: a
record is written at once, in the caller's thread, through the same `flush`.
"""

import atexit
import collections
import datetime
import logging
import os
import random
import threading
import time

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    close_old_connections,
    connection,
    connections,
    transaction,
)

from app.models import Prediction, PredictionMinute

log = logging.getLogger(__name__)

CAP_REFRESH = 60.0  # seconds between re-reading a version's count of samples for the day


class PredictionLog:
    def __init__(self):
        self.buffer = collections.deque()
        self.background = False  # set by app.wsgi: web servers write from a thread
        self.dropped = 0
        self.written = 0
        self.wake = threading.Event()
        self._thread = None
        self._pid = None
        self._start_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._samples = {}  # (version_id, date) → [count, read_at]

    def sample(self) -> bool:
        """Whether the request being answered keeps its inputs."""
        rate = settings.PREDICTION_SAMPLE_RATE
        return rate > 0 and random.random() < rate

    def record(self, **fields):
        """Log one request: the fields of a Prediction row (inputs and outputs in full;
        the writer trims them). Never raises."""
        if not settings.PREDICTION_LOG:
            return
        try:
            if len(self.buffer) >= settings.PREDICTION_LOG_BUFFER:
                self.dropped += 1
                return
            self.buffer.append(fields)
            if self.background:
                self._ensure_thread()
            else:
                self.flush()
        except Exception:  # noqa: BLE001 — the log must never fail a prediction
            log.exception("the prediction log could not take a record")

    def _ensure_thread(self):
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
                return
            self._pid = os.getpid()  # a forked child (gunicorn's workers) needs a thread of its own
            self._thread = threading.Thread(target=self._loop, name="prediction-log", daemon=True)
            self._thread.start()

    def _loop(self):
        while True:
            self.wake.wait(settings.PREDICTION_LOG_FLUSH_SECONDS)
            self.wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 — a thread that dies would stop the log for good
                log.exception("the prediction log could not be written; the next try is in %g s",
                              settings.PREDICTION_LOG_FLUSH_SECONDS)
                close_old_connections()

    def flush(self) -> int:
        """Write what the buffer holds; returns how many rows were written."""
        with self._flush_lock:
            batch = []
            while self.buffer:
                batch.append(self.buffer.popleft())
            if self.dropped:
                log.warning("the prediction log dropped %d record(s): its buffer (PREDICTION_LOG_BUFFER=%d) was full",
                            self.dropped, settings.PREDICTION_LOG_BUFFER)
                self.dropped = 0
            if not batch:
                return 0
            try:
                rows = [self._row(fields) for fields in batch]
                with transaction.atomic():
                    insert(rows)
            except IntegrityError:
                # Maybe not an outage: some record cannot be written as it is (its model was
                # deleted since). Write the batch row by row and drop only those, or one such
                # record would hold back the whole log for good.
                return self._write_one_by_one(batch, rows)
            except DatabaseError as exc:
                self._keep(batch, exc)
                return 0
            self.written += len(rows)
            return len(rows)

    def _keep(self, batch, exc):
        """The database did not take `batch`: keep it for the next try, as far as the buffer has room."""
        room = settings.PREDICTION_LOG_BUFFER - len(self.buffer)
        kept = batch[:max(0, room)]
        self.buffer.extendleft(reversed(kept))
        self.dropped += len(batch) - len(kept)
        log.warning("the prediction log could not be written (%s); %d record(s) kept for the next try",
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__, len(kept))
        if self.background:
            connection.close()

    def _write_one_by_one(self, batch, rows) -> int:
        written, refused = 0, []
        for i, (fields, row) in enumerate(zip(batch, rows)):
            try:
                with transaction.atomic():
                    insert([row])
                written += 1
            except IntegrityError as exc:
                refused.append((fields, exc))
            except DatabaseError as exc:  # an outage meanwhile: keep what is not written
                self.written += written
                self._keep([f for f, _exc in refused] + batch[i:], exc)
                return written
        self.written += written
        if refused and not written:
            # Every record refused: the table refuses rows (a full disk as SQLite can report
            # it, a trigger), not one bad record. Keep them, as for an outage.
            self._keep([f for f, _exc in refused], refused[0][1])
            return 0
        if refused:
            log.warning("the prediction log dropped %d record(s) the database refused (%s)", len(refused),
                        str(refused[0][1]).splitlines()[0][:200])
        return written

    def _row(self, fields) -> dict:
        row = dict(FIELD_DEFAULTS, **fields)  # a batch that fails to write is kept as it came
        limit = settings.PREDICTION_SAMPLE_MAX_INSTANCES
        inputs, outputs = row["inputs"], row["outputs"]
        row["sampled"] = sampled = bool(row["sampled"]) and inputs is not None and self._may_sample(row)
        row["inputs"] = inputs[:limit] if sampled else None
        keep = outputs is not None and (sampled or len(outputs) <= limit)
        row["outputs"] = (outputs[:limit] if sampled else outputs) if keep else None
        return row

    def _may_sample(self, fields) -> bool:
        version_id = fields.get("version_id")
        if version_id is None:
            return False
        key = (version_id, fields["at"].date())
        entry = self._samples.get(key)
        now = time.monotonic()
        if entry is None or now - entry[1] > CAP_REFRESH:
            day = datetime.datetime.combine(key[1], datetime.time(), tzinfo=datetime.timezone.utc)
            count = Prediction.objects.filter(version_id=version_id, sampled=True, at__gte=day,
                                              at__lt=day + datetime.timedelta(days=1)).count()
            entry = self._samples[key] = [count, now]
            if len(self._samples) > 1000:
                self._samples = {key: entry}
        if entry[0] >= settings.PREDICTION_SAMPLES_PER_DAY:
            return False
        entry[0] += 1
        return True

    def close(self):
        """Write what is left (at exit)."""
        if self.buffer and self._pid == os.getpid():
            try:
                self.flush()
            except Exception:  # noqa: BLE001 — exiting anyway
                log.exception("the prediction log's last records could not be written")


# The writer's INSERT: Django's own conversion of each value for the database (UUIDs, JSON,
# datetimes), then one executemany — a fifth of bulk_create's cost per row, which matters on
# a web server whose cores are busy answering (bench/predict_latency.py).
COLUMNS = [field for field in Prediction._meta.concrete_fields if not field.primary_key]
FIELD_DEFAULTS = {field.attname: field.get_default() for field in COLUMNS}


CONVERTED = {"UUIDField", "DateTimeField", "JSONField"}  # the rest are ints, floats, text, bools


def insert(rows: list[dict]):
    db = connections[DEFAULT_DB_ALIAS]  # not the thread-local proxy: looked up once, not per value
    table = db.ops.quote_name(Prediction._meta.db_table)
    names = ", ".join(db.ops.quote_name(field.column) for field in COLUMNS)
    marks = ", ".join(["%s"] * len(COLUMNS))
    plain = [(field.attname, None if field.get_internal_type() in CONVERTED else True) for field in COLUMNS]
    preps = {field.attname: field.get_db_prep_save for field in COLUMNS}
    values = [tuple(row[name] if keep else preps[name](row[name], db) for name, keep in plain) for row in rows]
    with db.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", values)


PRUNE_BATCH = 5000


def prune(now=None) -> int:
    """Delete the log's rows and roll-ups older than PREDICTION_LOG_DAYS (the worker's
    monitoring job), in batches so a busy endpoint's writes wait at most one batch. A
    prediction with feedback is kept: the live accuracy over time is read from it."""
    days = settings.PREDICTION_LOG_DAYS
    if not days:
        return 0
    cutoff = (now or datetime.datetime.now(datetime.timezone.utc)) - datetime.timedelta(days=days)
    deleted = 0
    while True:
        ids = list(Prediction.objects.filter(at__lt=cutoff, feedback__isnull=True).order_by().values_list(
            "id", flat=True)[:PRUNE_BATCH])
        if not ids:
            break
        deleted += Prediction.objects.filter(id__in=ids).delete()[0]
    PredictionMinute.objects.filter(minute__lt=cutoff).delete()
    return deleted


prediction_log = PredictionLog()
atexit.register(prediction_log.close)
