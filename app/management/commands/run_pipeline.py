import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from app.models import Run, Status
from app.pipelines.registry import ParamError
from app.runs import engine, tasks


def parse_param(text):
    if "=" not in text:
        raise CommandError(f"--param {text!r} is not of the form key=value")
    key, value = text.split("=", 1)
    if not key.strip():
        raise CommandError(f"--param {text!r} has an empty key")
    return key.strip(), value


class Command(BaseCommand):
    help = "Start a run of a pipeline: on the worker (default), waiting for it, or in this process."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Pipeline name (see list_pipelines)")
        parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="Set a parameter")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--sync", action="store_true", help="Run in this process through the same engine")
        mode.add_argument("--wait", action="store_true", help="Wait for the worker; exit 0 only if it succeeded")
        parser.add_argument("--timeout", type=float, default=3600, help="Seconds --wait waits (default 3600)")
        parser.add_argument("--ignore-cache", action="store_true",
                            help="Run cached steps even when an earlier output could be reused")

    def handle(self, name, param, sync, wait, timeout, ignore_cache=False, **options):
        raw = {}
        for text in param:
            key, value = parse_param(text)
            if key in raw:
                raise CommandError(f"--param {key} is given twice")
            raw[key] = value
        try:
            if sync:
                run, ready = engine.start_run(name, raw, source="cli", ignore_cache=ignore_cache)
            else:
                run = tasks.trigger(name, raw, source="cli", ignore_cache=ignore_cache)
        except engine.UnknownPipeline as exc:
            raise CommandError(str(exc)) from None
        except ParamError as exc:
            raise CommandError(f"bad parameters for {name}: {exc}") from None
        self.stdout.write(str(run.pk))
        if sync:
            run = engine.run_inline(run, ready)
        elif wait:
            run = self.wait_for(run, timeout)
        else:
            return
        self.stderr.write(f"run #{run.pk} {run.status} ({run.steps_finished}/{run.steps_total} steps)")
        if run.status != "succeeded":
            raise CommandError(self.failure(run))

    def failure(self, run) -> str:
        """Which step failed and why, and where to look: what an operator at a terminal needs."""
        url = settings.SITE_URL + run.get_absolute_url()
        failed = run.step_runs.filter(status=Status.FAILED).order_by("finished_at", "position").first()
        if failed is None:
            return f"run #{run.pk} ended {run.status}; see {url}"
        return f"run #{run.pk} ended {run.status}: step {failed.step_name!r} failed: {failed.error}; see {url}"

    def wait_for(self, run, timeout):
        deadline = time.monotonic() + timeout
        delay = 0.05
        while time.monotonic() < deadline:
            run = Run.objects.get(pk=run.pk)
            if run.is_finished:
                return run
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
        raise CommandError(f"run #{run.pk} did not finish within {timeout:g} s (is a worker running?)")
