#!/usr/bin/env python
"""How the dashboard's pages and polls scale: `python bench/ui_scale.py`.

Seeds 1,000 and then 100,000 runs (10 steps each) into one fresh SQLite DATA_DIR and, at
each size, times in-process through Django's test client (the whole middleware stack, no
network, DEBUG off), --repeat requests each (default 200): the run list and its poll, a
pipeline's runs × steps grid, a running run's page and its polls, and a 1,000-step run's
page and its polls, with their response bytes. The floor, measured in the same process at
each size: a bare view rendering a trivial template behind the same middleware.

A poll is measured twice: when nothing changed (the page's own version: 204) and when one
step changed since the version the page holds (the version from before that step ran).

Prints one JSON line per request kind and size (median and p95 in ms, bytes, SQL queries),
then a summary line against the targets of the dashboard issue: every page at 100k runs
≤ 1.5× its time at 1k; a poll ≤ 3× the bare view; a 1,000-step run's poll ≤ 5 KB when one
step changed. Measures only: nothing here asserts.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZES = (1_000, 100_000)
STEPS = 10
WIDE = 1_000
TARGET_GROWTH = 1.5
TARGET_POLL_OVER_BARE = 3.0
TARGET_WIDE_POLL_BYTES = 5_000


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--sizes", default=",".join(str(size) for size in SIZES),
                        help="run counts to measure at, ascending (default 1000,100000)")
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="mlops-bench-ui-")
    os.environ.update(DATA_DIR=data_dir, SECRET_KEY="bench", DJANGO_SETTINGS_MODULE="app.settings",
                      ALLOWED_HOSTS="testserver", DEBUG="0", HTTPS="0")
    try:
        bench(args, [int(size) for size in args.sizes.split(",")])
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def define_pipelines():
    """A 10-step chain (the seeded runs) and 1,000 independent steps (the wide run)."""
    from app.pipelines import pipeline

    def noop(name):
        def step(ctx):
            return None
        step.__name__ = step.__qualname__ = name
        step.__doc__ = f"Step {name}: does nothing."
        return step

    chain = pipeline("bench_ui_chain")
    previous = None
    for i in range(STEPS):
        previous = chain.step(after=[previous] if previous else [])(noop(f"step_{i}"))
    wide = pipeline("bench_ui_wide")
    for i in range(WIDE):
        wide.step()(noop(f"w{i:04d}"))


def seed(up_to: int, snapshot_id: int):
    """Finished runs (8 in 10 succeeded, 1 failed, 1 cancelled) of the chain, up to `up_to` in all."""
    from app.models import Run, Status, StepRun

    statuses = [Status.SUCCEEDED] * 8 + [Status.FAILED, Status.CANCELLED]
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    batch = 2_000
    while (have := Run.objects.count()) < up_to:
        count = min(batch, up_to - have)
        runs = Run.objects.bulk_create(
            Run(snapshot_id=snapshot_id, pipeline_name="bench_ui_chain", status=statuses[i % 10], params={},
                steps_total=STEPS, steps_finished=STEPS, started_at=start + datetime.timedelta(minutes=i),
                finished_at=start + datetime.timedelta(minutes=i, seconds=5 + i % 7))
            for i in range(have, have + count)
        )
        StepRun.objects.bulk_create(
            StepRun(run=run, step_name=f"step_{p}", position=p, attempt=1,
                    status=run.status if p == STEPS - 1 else Status.SUCCEEDED,
                    started_at=run.started_at, finished_at=run.finished_at)
            for run in runs for p in range(STEPS)
        )


def version_of(response) -> str:
    return re.search(r'id="(?:run|runs)-live" data-version="([^"]+)"', response.content.decode())[1]


def bench(args, sizes):
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client, override_settings
    from django.test.utils import CaptureQueriesContext
    from django.urls import clear_url_caches

    from app.models import Run
    from app.runs import engine, tasks

    call_command("migrate", verbosity=0)
    define_pipelines()
    user = User.objects.create_user("op")
    user.groups.add(Group.objects.get(name="operators"))

    # A running run of the chain (3 steps done, the 4th queued), and a 1,000-step run with its
    # DAG laid out (as the worker would); for each, the version its page held one step ago.
    running, ready = engine.start_run("bench_ui_chain")
    client = Client()
    client.force_login(user)
    for _ in range(2):
        ready = engine.execute_step(ready[0])
    running_before = version_of(client.get(f"/runs/{running.pk}/"))
    engine.execute_step(ready[0])
    wide, wide_ready = engine.start_run("bench_ui_wide")
    tasks.store_layout(wide.snapshot)
    wide_before = version_of(client.get(f"/runs/{wide.pk}/"))
    engine.execute_step(wide_ready[0])

    poll = {"HTTP_HX_REQUEST": "true", "HTTP_X_POLL": "1"}
    results = {}
    with override_settings(ROOT_URLCONF="bench.ui_urls"):
        clear_url_caches()
        for size in sizes:
            seeding = time.perf_counter()
            seed(size, running.snapshot_id)
            print(json.dumps({"runs": Run.objects.count(), "seed_s": round(time.perf_counter() - seeding, 1)}),
                  flush=True)
            connection.cursor().execute("ANALYZE")
            kinds = {
                "bare view (floor)": ("/bench/bare/", {}),
                "run list": ("/runs/", {}),
                "run list poll, unchanged": ("/runs/", {**poll, "HTTP_X_VERSION": version_of(client.get("/runs/"))}),
                "run list poll, changed": ("/runs/", {**poll, "HTTP_X_VERSION": "old"}),
                "grid (last 25 runs)": ("/pipelines/bench_ui_chain/grid/", {}),
                "run page": (f"/runs/{running.pk}/", {}),
                "run poll, unchanged": (f"/runs/{running.pk}/", {
                    **poll, "HTTP_X_VERSION": version_of(client.get(f"/runs/{running.pk}/"))}),
                "run poll, one step changed": (f"/runs/{running.pk}/", {**poll, "HTTP_X_VERSION": running_before}),
                "1,000-step run page": (f"/runs/{wide.pk}/", {}),
                "1,000-step run poll, unchanged": (f"/runs/{wide.pk}/", {
                    **poll, "HTTP_X_VERSION": version_of(client.get(f"/runs/{wide.pk}/"))}),
                "1,000-step run poll, one step changed": (f"/runs/{wide.pk}/", {**poll, "HTTP_X_VERSION": wide_before}),
            }
            for kind, (url, headers) in kinds.items():
                times = []
                repeat = args.repeat if "1,000-step run page" not in kind else max(20, args.repeat // 10)
                for _ in range(repeat):
                    connection.queries_log.clear()  # CaptureQueriesContext counts within the log's 9,000
                    with CaptureQueriesContext(connection) as queries:
                        start = time.perf_counter()
                        response = client.get(url, **headers)
                        times.append((time.perf_counter() - start) * 1000)
                    if response.status_code not in (200, 204):
                        raise SystemExit(f"{kind}: {url} answered {response.status_code}")
                times.sort()
                results[kind, size] = line = {
                    "request": kind, "runs": size, "status": response.status_code,
                    "median_ms": round(statistics.median(times), 2),
                    "p95_ms": round(times[max(int(len(times) * 0.95) - 1, 0)], 2),
                    "bytes": len(response.content), "queries": len(queries), "requests": repeat,
                }
                print(json.dumps(line), flush=True)
    summary(results, sizes)


def summary(results, sizes):
    small, large = sizes[0], sizes[-1]
    kinds = sorted({kind for kind, _ in results}, key=list(dict.fromkeys(kind for kind, _ in results)).index)
    growth = {kind: round(results[kind, large]["median_ms"] / results[kind, small]["median_ms"], 2)
              for kind in kinds if kind != "bare view (floor)"}
    bare = results["bare view (floor)", large]["median_ms"]
    polls = {kind: round(results[kind, large]["median_ms"] / bare, 2) for kind in kinds if "poll" in kind}
    print(json.dumps({
        "summary": f"{small:,} → {large:,} runs",
        f"growth_{large}_over_{small}": growth, "target_growth": TARGET_GROWTH,
        "poll_over_bare": polls, "target_poll_over_bare": TARGET_POLL_OVER_BARE,
        "wide_poll_bytes": results["1,000-step run poll, one step changed", large]["bytes"],
        "target_wide_poll_bytes": TARGET_WIDE_POLL_BYTES,
    }), flush=True)


if __name__ == "__main__":
    main()
