"""Queues: which workers run which steps.

A step goes to its queue (`pipeline(..., queue="gpu")` or `@p.step(queue=...)`; "default"
otherwise), and only workers started for that queue (`run_huey --queue gpu`, or the
HUEY_QUEUE setting) take it. Each queue is a Huey instance of its own on the same storage
(the SQLite file or the Redis server), named after the queue; the default queue is djhuey's
instance, so periodic tasks and one-queue set-ups are unchanged. One worker process serves
one queue: start one per queue a machine should serve.
"""

import threading

from django.conf import settings
from django.utils.module_loading import import_string
from huey.contrib.djhuey import HUEY

from app.pipelines.registry import DEFAULT_QUEUE

_instances = {DEFAULT_QUEUE: HUEY}
_tasks: dict[tuple, object] = {}
_lock = threading.Lock()


def huey_for(queue: str):
    """The Huey instance of a queue (created on first use, on the configured storage)."""
    with _lock:
        if queue not in _instances:
            config = dict(settings.HUEY)
            config.pop("consumer", None)
            name = f"{config.pop('name', 'mlops')}.{queue}"
            backend = import_string(config.pop("huey_class", "huey.RedisHuey"))
            config.update(config.pop("connection", {}))
            _instances[queue] = backend(name, **config)
        return _instances[queue]


def task_on(queue: str, task):
    """`task` (a djhuey task of the default queue) registered on another queue, under the
    same name, so a worker of that queue runs the same function."""
    if queue == DEFAULT_QUEUE:
        return task
    key = (queue, task.func)
    if key not in _tasks:
        instance = huey_for(queue)
        with _lock:
            if key not in _tasks:
                _tasks[key] = instance.task(name=task.name)(task.func)
    return _tasks[key]
