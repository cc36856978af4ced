"""`manage.py run_huey [--queue NAME]`: djhuey's worker, plus what a worker owes the rest.

- It serves one queue (`--queue`, default the HUEY_QUEUE setting; app.runs.queues).
- A thread of its own records its sign of life and does the periodic work once per period
  across workers (app.runs.worker): the watchdog, the
  schedules (app.ops.scheduler), backfills (app.ops.backfills), alerts (app.ops.alerts) and the daily prune
  (app.ops.retention).
- SIGTERM drains: no new steps; running ones may finish for WORKER_DRAIN_SECONDS; then the
  step processes still running are stopped and their steps queued again at once for another
  worker (app.runs.supervisor.hand_over), never left for the watchdog. SIGINT (Ctrl-C)
  hands them over at once. Steps with isolation="thread" cannot be handed over: past the
  drain time they are left to the watchdog.
"""

import logging

from django.conf import settings
from django.core.management.base import CommandError
from huey.consumer import Consumer
from huey.consumer_options import ConsumerConfig
from huey.contrib.djhuey.management.commands.run_huey import Command as DjhueyCommand

from app.mlmodels import monitoring
from app.ops import alerts, backfills, retention, scheduler
from app.pipelines.registry import valid_queue
from app.runs import queues, supervisor, tasks
from app.runs.worker import Job, WorkerBeat

log = logging.getLogger("app.worker")


class DrainingConsumer(Consumer):
    """huey's consumer, whose graceful stop drains and then hands running steps over."""

    beat: WorkerBeat | None = None

    def stop(self, graceful=False):
        supervisor.stopping.set()
        self.stop_flag.set()
        if self.beat is not None:
            self.beat.drain()
        if graceful:
            log.warning("worker stopping: taking no new steps; running ones may finish within %g s",
                        self.shutdown_timeout or 0)
            if self._join_workers():
                log.warning("worker stopped: every running step finished")
                return
        log.warning("worker stopping: handing the steps still running over to another worker")
        supervisor.hand_over.set()
        self.shutdown_timeout = settings.STEP_KILL_GRACE_SECONDS + 5
        if self._join_workers():
            log.warning("worker stopped")
            return
        super().stop(graceful=False)


class Command(DjhueyCommand):
    help = "Run a worker: take steps from one queue and run them (SIGTERM drains first)."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--queue", default=None, help="the queue to serve (default: the HUEY_QUEUE setting)")

    def handle(self, *args, **options):
        queue = options.pop("queue") or settings.HUEY_QUEUE
        if not valid_queue(queue):
            raise CommandError(f"--queue {queue!r}: a queue is 1–50 lowercase letters, digits, _ or -")
        consumer_options = dict(settings.HUEY.get("consumer", {}))
        consumer_options.update({k: v for k, v in options.items() if v is not None and k in ConsumerConfig._fields})
        config = ConsumerConfig(**consumer_options)
        config.validate()
        huey_logger = logging.getLogger("huey")
        if not huey_logger.handlers:
            config.setup_logger(huey_logger)
        tasks.serving["queue"] = queue
        huey = queues.huey_for(queue)
        queues.task_on(queue, tasks.run_step)  # registered before the first message arrives
        if huey is not queues.huey_for("default"):
            huey._startup.update(queues.huey_for("default")._startup)  # the fork server, as on the default queue
        alerts.sender.enabled = True  # this process sends the alerts' messages, on a thread of its own
        consumer = DrainingConsumer(huey, **config.values)
        consumer.beat = WorkerBeat(queue, config.workers, jobs=(
            Job("scheduler", lambda: settings.SCHEDULER_SECONDS, scheduler.tick),
            Job("backfills", lambda: settings.SCHEDULER_SECONDS, backfills.advance_all),
            Job("alerts", lambda: settings.ALERTS_SECONDS, alerts.evaluate),
            Job("alert-delivery", lambda: settings.ALERTS_SECONDS, alerts.sender.kick),
            Job("prune", lambda: 86400, retention.scheduled_prune),
            Job("monitoring", lambda: settings.MONITORING_SECONDS, monitoring.tick),
        ))
        consumer.beat.start()
        log.info("worker serving queue %r with %d threads", queue, config.workers)
        consumer.run()
