"""The monitoring job: one worker every MONITORING_SECONDS (its lease in app.runs.worker)
rolls the prediction log up per minute, compares recent inputs with the training inputs,
promotes the shadow trials whose time is up, and deletes the log's rows older than
PREDICTION_LOG_DAYS. Each part runs on its own: one that fails does not stop the others,
and the job then fails naming it, so the dashboard's "Periodic work that is failing" tells
the operator (a failure only logged would go unseen)."""

import logging

from app.mlmodels import drift, health, predlog, trials

log = logging.getLogger(__name__)

PARTS = (
    ("rolling up the prediction log", health.rollup),
    ("computing drift", drift.compute_all),
    ("ending shadow periods", trials.promote_due),
    ("deleting old log rows", predlog.prune),
)


class MonitoringFailed(Exception):
    """Some parts of the job failed; the message names each with its error."""


def tick(now=None):
    failed = []
    for name, part in PARTS:
        try:
            part(now=now)
        except Exception as exc:  # noqa: BLE001 — the other parts still run; reported below
            log.exception("monitoring: %s failed; the next period tries again", name)
            failed.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:150] if str(exc) else ''}")
    if failed:
        raise MonitoringFailed("; ".join(failed))
