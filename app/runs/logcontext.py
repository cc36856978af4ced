"""Which run and step a log line is about: the engine sets it while it works on a step, and
`StepFields` adds it to every record (LOG_FORMAT=json writes them as `run_id`,
`step_run_id` and `step`)."""

import contextlib
import contextvars
import logging

_current = contextvars.ContextVar("mlops_step", default=None)


@contextlib.contextmanager
def step(run_id: int, step_run_id: int, step_name: str):
    token = _current.set((run_id, step_run_id, step_name))
    try:
        yield
    finally:
        _current.reset(token)


class StepFields(logging.Filter):
    def filter(self, record):
        current = _current.get()
        if current is not None and not hasattr(record, "run_id"):
            record.run_id, record.step_run_id, record.step = current
        return True
