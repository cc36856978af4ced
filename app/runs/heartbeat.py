"""Marking the step runs a worker is running as alive, from one daemon thread per process.

The thread runs in the worker, never in a step's child process (app.runs.supervisor): a
step that holds the GIL for minutes starves its own process, not this thread, so it is not
taken for dead. app.runs.watchdog reads the marks.
"""

import logging
import threading
import time

from django.conf import settings
from django.db import connection
from django.utils import timezone

from app.models import Status, StepRun

log = logging.getLogger(__name__)


class Heartbeat:
    """Marks the step runs this process is running as alive, from one daemon thread."""

    def __init__(self):
        self.step_run_ids = set()
        self.lock = threading.Lock()
        self.thread = None

    def add(self, step_run_id):
        with self.lock:
            self.step_run_ids.add(step_run_id)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._beat, name="step-heartbeat", daemon=True)
                self.thread.start()

    def discard(self, step_run_id):
        with self.lock:
            self.step_run_ids.discard(step_run_id)

    def _beat(self):
        while True:
            time.sleep(settings.STEP_HEARTBEAT_SECONDS)
            with self.lock:
                ids = list(self.step_run_ids)
            if not ids:
                continue
            try:
                StepRun.objects.filter(pk__in=ids, status=Status.RUNNING).update(heartbeat_at=timezone.now())
            except Exception:
                # A locked or lost database must not end the thread; the next beat retries.
                log.exception("could not record the heartbeat of step runs %s", ids)
            finally:
                connection.close()


heartbeat = Heartbeat()
