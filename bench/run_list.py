"""How fast the run list answers with many runs: `python bench/run_list.py --runs 100000`.

Seeds N runs (5 step runs each) into a fresh SQLite DATA_DIR, then times the page through
Django's test client (in-process, no network): the first page, a status filter, a pipeline
filter deep in the pages, and an htmx poll. Prints one JSON line per request kind
(median and p95 of --repeat requests, the number of SQL queries). Measures only.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.site import operator, run_in_temporary_site  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    run_in_temporary_site("mlops-bench-runlist-", bench, args, DEBUG="0", HTTPS="0")


def bench(args):
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from app.models import Run, Status, StepRun
    from app.runs import engine

    user = operator()
    template, _ready = engine.start_run("fanout_demo", {})
    statuses = [Status.SUCCEEDED] * 8 + [Status.FAILED, Status.CANCELLED]
    started = time.perf_counter()
    batch = 5000
    for offset in range(0, args.runs, batch):
        runs = Run.objects.bulk_create(
            Run(snapshot_id=template.snapshot_id, pipeline_name=("fanout_demo", "flaky_demo", "train_classifier")[i % 3],
                status=statuses[i % 10], params=template.params, steps_total=5, steps_finished=5)
            for i in range(offset, min(offset + batch, args.runs))
        )
        StepRun.objects.bulk_create(
            StepRun(run=run, step_name=name, position=p, status=Status.SUCCEEDED)
            for run in runs for p, name in enumerate(["load", "total", "mean", "spread", "report"])
        )
    print(json.dumps({"seeded_runs": Run.objects.count(), "seed_s": round(time.perf_counter() - started, 1)}), flush=True)

    client = Client()
    client.force_login(user)
    kinds = {
        "first page": ("/runs/", {}),
        "status filter": ("/runs/?status=failed", {}),
        "pipeline filter, page 1000": ("/runs/?pipeline=flaky_demo&page=1000", {}),
        "htmx poll": ("/runs/", {"HTTP_HX_REQUEST": "true"}),
        "run page": (f"/runs/{template.pk}/", {}),
    }
    for kind, (url, headers) in kinds.items():
        times = []
        for _ in range(args.repeat):
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                response = client.get(url, **headers)
                times.append((time.perf_counter() - start) * 1000)
            assert response.status_code in (200, 286), (url, response.status_code)
        times.sort()
        print(json.dumps({
            "request": kind, "url": url, "median_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[int(len(times) * 0.95) - 1], 1), "queries": len(queries),
        }), flush=True)


if __name__ == "__main__":
    main()
