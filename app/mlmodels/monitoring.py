"""The monitoring job: one worker every MONITORING_SECONDS (its lease in app.runs.worker)
rolls the prediction log up per minute, compares recent inputs with the training inputs,
promotes the shadow trials whose time is up, and deletes the log's rows older than
PREDICTION_LOG_DAYS. Each part runs on its own: one that fails is logged and the others
still run."""

import logging

from app.mlmodels import drift, health, predlog, trials

log = logging.getLogger(__name__)


def tick(now=None):
    for name, part in (("rollup", health.rollup), ("drift", drift.compute_all), ("promotions", trials.promote_due),
                       ("log retention", predlog.prune)):
        try:
            part(now=now)
        except Exception:
            log.exception("monitoring: %s failed; the next period tries again", name)
