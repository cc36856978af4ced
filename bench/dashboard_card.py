#!/usr/bin/env python
"""What the dashboard's live-model card costs: `python bench/dashboard_card.py`.

Every open dashboard polls every 10 s, and each poll draws the last hour of each live model
(app.web.health_card.home: requests, p50/p95, errors and a sparkline). That reads the
per-minute roll-up up to its last rolled minute and the raw prediction log after it, so its
cost depends on how much of the log is not rolled up yet.

In one fresh SQLite DATA_DIR, with --models live models (default 3), it times the dashboard's
poll through Django's test client (the whole middleware stack, DEBUG off) and the card alone,
--repeat times each (default 50), in four states of the log:
- empty;
- an hour of --per-minute requests a minute per model (default 100), all rolled up;
- the same hour never rolled up (no worker runs the monitoring job);
- rolled up, plus a tail of --tail-seconds (default 120) at --per-second requests a second
  per model (default 100) not rolled up yet (the monitoring job runs every MONITORING_SECONDS).

The floor, in the same process: a bare view rendering a trivial template behind the same
middleware (bench/ui_urls.py). Prints one JSON line per measurement (median and p95 in ms,
SQL queries). Measures only: nothing here asserts.
"""

import argparse
import datetime
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.site import operator, run_in_temporary_site  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--per-minute", type=int, default=100, help="requests a minute per model over the hour")
    parser.add_argument("--per-second", type=int, default=100, help="requests a second per model in the tail")
    parser.add_argument("--tail-seconds", type=int, default=120, help="seconds of log not rolled up yet")
    args = parser.parse_args()
    run_in_temporary_site("mlops-bench-card-", bench, args, DEBUG="0", HTTPS="0")


def bench(args):
    from django.db import connection
    from django.test import Client, override_settings
    from django.test.utils import CaptureQueriesContext
    from django.urls import clear_url_caches
    from django.utils import timezone

    from app.mlmodels import health
    from app.models import Deployment, ModelVersion, Prediction, PredictionMinute, RegisteredModel, Role
    from app.web import health_card

    client = Client()
    client.force_login(operator())
    now = timezone.now()
    live = []
    for i in range(args.models):
        model = RegisteredModel.objects.create(name=f"model_{i}")
        version = ModelVersion.objects.create(model=model, version=1, format="pickle", file_path=f"bench/{i}.pkl")
        deployment = Deployment.objects.create(model=model, version=version, kind="deploy", reason="bench",
                                               deployed_at=now - datetime.timedelta(days=1))
        RegisteredModel.objects.filter(pk=model.pk).update(live=deployment)
        live.append(version)

    def seed(per_model, seconds, until):
        rows = [
            Prediction(uid=uuid.uuid4(), model_id=version.model_id, version=version, role=Role.LIVE,
                       at=until - datetime.timedelta(seconds=seconds * j / per_model), latency_ms=2.0 + j % 50,
                       status=500 if j % 20 == 0 else 200, n_instances=1)
            for version in live for j in range(per_model)
        ]
        Prediction.objects.bulk_create(rows, batch_size=5000)
        connection.cursor().execute("ANALYZE")

    def timed(state, kind, call):
        times, queries = [], 0
        for _ in range(args.repeat):
            connection.queries_log.clear()
            with CaptureQueriesContext(connection) as captured:
                start = time.perf_counter()
                call()
                times.append((time.perf_counter() - start) * 1000)
            queries = len(captured)
        times.sort()
        print(json.dumps({
            "state": state, "measure": kind, "models": args.models, "median_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[max(int(len(times) * 0.95) - 1, 0)], 2), "queries": queries,
            "log_rows": Prediction.objects.count(), "rolled_minutes": PredictionMinute.objects.count(),
        }), flush=True)

    def poll():
        response = client.get("/dashboard/", HTTP_HX_REQUEST="true", HTTP_X_POLL="1")
        if response.status_code != 200:
            raise SystemExit(f"the dashboard's poll answered {response.status_code}")

    def measure(state):
        timed(state, "bare view (floor)", lambda: client.get("/bench/bare/"))
        timed(state, "dashboard poll", poll)
        timed(state, "live-model card alone", health_card.home)

    with override_settings(ROOT_URLCONF="bench.ui_urls"):
        clear_url_caches()
        measure("empty log")
        # The hour up to the tail; the roll-up as the monitoring job would have left it when
        # the tail began; the tail after it.
        tail_start = now - datetime.timedelta(seconds=args.tail_seconds)
        seed(args.per_minute * 60, 3600, tail_start)
        measure(f"an hour at {args.per_minute}/min per model, never rolled up")
        health.rollup(tail_start)
        measure("the same hour, rolled up")
        seed(args.per_second * args.tail_seconds, args.tail_seconds, now)
        measure(f"rolled up + {args.tail_seconds} s at {args.per_second}/s per model not rolled up yet")


if __name__ == "__main__":
    main()
