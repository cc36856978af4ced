"""Latency of the prediction endpoint, from the bare model up to HTTP through gunicorn.

    .venv/bin/python bench/predict_latency.py
    .venv/bin/python bench/predict_latency.py --trees 10 --workers 2 --threads 4 --clients 1,8

In a fresh temporary DATA_DIR: migrates, trains `train_classifier` in-process (a random
forest of --trees trees on iris, registered as `iris-rf` v1), deploys it and creates an API
token. Then, always with one instance of 4 iris features per request, it times:

- model.predict:   the deployed model object's `predict` in this process (the floor);
- serving.predict: `serving.predict("iris-rf", payload)` in this process: the lookup of the
                   live deployment (one query), the input checks, the model, the answer dict;
- Django:          the whole view stack through Django's test client (middleware, token
                   lookup, JSON in and out), in this process, no network;
- log off / on:    serving.predict and HTTP are measured twice, with the prediction log off
                   (PREDICTION_LOG=0, the floor of the log's cost) and on with sampling at
                   --sample-rate (the default 1 in 10) — the log writing from its thread, as
                   in a web process; the summary prints the p50 difference of each pair, and
                   checks that every request of the "on" lines reached the log;
- HTTP:            `POST /api/models/iris-rf/predict` to a real gunicorn subprocess on a
                   loopback port (--workers, --threads), from 1 and from 8 concurrent client
                   threads. Each client keeps one `http.client.HTTPConnection` open when the
                   server keeps connections alive (gthread, --threads > 1) and opens a new
                   one per request when it does not (the sync worker closes every connection).

Prints p50/p90/p99/max in ms and requests per second for each line. The client threads and
gunicorn share this machine's cores. Measurement only: nothing here asserts timings. The
server is always stopped and the DATA_DIR removed (unless --keep).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "iris-rf"
PATH = f"/api/models/{MODEL_NAME}/predict"
INSTANCE = [5.1, 3.5, 1.4, 0.2]
PAYLOAD = {"instances": [INSTANCE]}
BODY = json.dumps(PAYLOAD).encode()

# Django's settings are read from the environment once, at setup, and gunicorn gets the same
# environment, so the DATA_DIR is made and the environment set before anything of the app is
# imported (app.models needs configured settings).
DATA_DIR = Path(tempfile.mkdtemp(prefix="mlops-bench-predict-"))
os.environ.update(
    DJANGO_SETTINGS_MODULE="app.settings",
    DATA_DIR=str(DATA_DIR),
    SECRET_KEY="bench-only-not-secret",
    DEBUG="0",
    # Plain HTTP on loopback: no redirect to HTTPS (the secure default with DEBUG off).
    HTTPS="0",
    HUEY_IMMEDIATE="0",
    LOG_LEVEL="WARNING",
    ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
)
sys.path.insert(0, str(ROOT))
try:
    django.setup()
except BaseException:
    shutil.rmtree(DATA_DIR, ignore_errors=True)
    raise

from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client, override_settings

from app.api import tokens
from app.mlmodels import deployments, predlog, serving
from app.models import ModelVersion, Prediction
from app.runs import engine

# --- timing -----------------------------------------------------------------------------


@dataclass
class Line:
    """One row of the results table."""

    what: str
    clients: int
    times_ms: list[float]
    wall_s: float
    note: str = ""
    logged: tuple[int, int] | None = None  # (rows in the log before, requests expected in it)
    found: int = 0  # of those, how many reached the log

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the request times."""
        ordered = sorted(self.times_ms)
        rank = max(1, math.ceil(len(ordered) * p / 100))
        return ordered[rank - 1]

    def row(self) -> list[str]:
        return [
            self.what,
            str(self.clients),
            str(len(self.times_ms)),
            *(f"{self.percentile(p):.3f}" for p in (50, 90, 99)),
            f"{max(self.times_ms):.3f}",
            f"{len(self.times_ms) / self.wall_s:,.0f}",
            self.note,
        ]


def time_calls(what: str, call, n: int, warmup: int = 20) -> Line:
    """Call `call()` n times in this thread (after `warmup` untimed calls)."""
    for _ in range(warmup):
        call()
    times = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return Line(what, 1, times, time.perf_counter() - start)


# --- setting up the model -----------------------------------------------------------------


def train_and_deploy(trees: int) -> tuple[ModelVersion, str]:
    """Migrate, train iris-rf v1 in-process, deploy it; returns the version and an API token."""
    call_command("migrate", verbosity=0)
    user = User.objects.create_user("bench")
    run, ready = engine.start_run("train_classifier", {"dataset": "iris", "n_estimators": trees}, source="cli")
    run = engine.run_inline(run, ready)
    if run.status != "succeeded":
        raise SystemExit(f"training run #{run.pk} ended {run.status}")
    version = ModelVersion.objects.select_related("model").get(model__name=MODEL_NAME, run_id=run.pk)
    deployments.deploy(version, user, "bench")
    _row, secret = tokens.create(user, "bench")
    return version, secret


# --- in-process lines ---------------------------------------------------------------------

IN_PROCESS_ROUNDS = 5


def measure_in_process(version: ModelVersion, secret: str, n: int) -> list[Line]:
    model = serving.load_version(version)
    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}

    def through_django():
        response = client.post(PATH, BODY, content_type="application/json", **headers)
        if response.status_code != 200:
            raise SystemExit(f"test client: {response.status_code} {response.content[:300]!r}")

    lines = [time_calls("model.predict (in-process)", lambda: model.predict(PAYLOAD["instances"]), n)]
    predlog.prediction_log.background = True  # as app.wsgi sets it: written by the log's thread
    before = Prediction.objects.count()
    # Off and on take turns, IN_PROCESS_ROUNDS times, so a drift in the machine's speed hits
    # both alike; each line pools its rounds.
    pooled = {False: [], True: []}
    per_round = max(1, n // IN_PROCESS_ROUNDS)
    for _round in range(IN_PROCESS_ROUNDS):
        for log_on in (False, True):
            with override_settings(PREDICTION_LOG=log_on):
                pooled[log_on].append(time_calls("", lambda: serving.predict(MODEL_NAME, PAYLOAD), per_round))
    for log_on in (False, True):
        parts = pooled[log_on]
        lines.append(Line(f"serving.predict, log {'on' if log_on else 'off'} (in-process)", 1,
                          [t for part in parts for t in part.times_ms], sum(part.wall_s for part in parts)))
    lines[-1].logged = (before, IN_PROCESS_ROUNDS * (per_round + 20))  # the warm-up calls are logged too
    check_logged(lines[-1])
    lines.append(time_calls("Django test client (in-process)", through_django, n))
    return lines


# --- gunicorn -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(port: int, workers: int, threads: int, log_path: Path, env: dict) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "gunicorn", "app.wsgi",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
        "--threads", str(threads),
        "--no-control-socket",
    ]
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env=dict(os.environ, **env), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches the bench, whose finally stops the server
        )


def stop_gunicorn(server: subprocess.Popen):
    if server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def wait_until_up(port: int, secret: str, server: subprocess.Popen, log_path: Path, timeout_s: float = 60):
    """Poll the endpoint until it answers 200; fail early if the server died."""
    deadline = time.monotonic() + timeout_s
    while True:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}:\n{tail(log_path)}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            status, body, _closes = post_once(conn, secret)
        except OSError:
            status, body = None, b""
        finally:
            conn.close()
        if status == 200:
            return json.loads(body)
        if status is not None:
            raise SystemExit(f"the endpoint answered {status}: {body[:300]!r}")
        if time.monotonic() > deadline:
            raise SystemExit(f"gunicorn did not answer within {timeout_s:.0f} s:\n{tail(log_path)}")
        time.sleep(0.1)


# --- HTTP clients ---------------------------------------------------------------------------


def post_once(conn: http.client.HTTPConnection, secret: str) -> tuple[int, bytes, bool]:
    """One prediction request on `conn`; returns status, body and whether the server closes."""
    conn.request("POST", PATH, BODY, {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"})
    response = conn.getresponse()
    body = response.read()
    return response.status, body, response.will_close


class HttpClient(threading.Thread):
    """One client: `n` requests back to back, on one kept-alive connection when the server
    allows it, else on a new connection each (whose set-up is then part of the time)."""

    def __init__(self, port: int, secret: str, n: int, start_gate: threading.Barrier):
        super().__init__(daemon=True)
        self.port, self.secret, self.n, self.start_gate = port, secret, n, start_gate
        self.times_ms: list[float] = []
        self.connections = 0
        self.error: str | None = None
        self.finished_at = 0.0

    def connect(self) -> http.client.HTTPConnection:
        self.connections += 1
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def run(self):
        self.start_gate.wait()
        conn = None
        try:
            for _ in range(self.n):
                t0 = time.perf_counter()
                conn = conn or self.connect()
                status, body, closes = post_once(conn, self.secret)
                self.times_ms.append((time.perf_counter() - t0) * 1000)
                if status != 200:
                    self.error = f"{status}: {body[:300]!r}"
                    return
                if closes:
                    conn.close()
                    conn = None
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.finished_at = time.perf_counter()
            if conn is not None:
                conn.close()


def measure_http(label: str, port: int, secret: str, clients: int, n: int) -> Line:
    """`clients` threads, `n` requests each, started together; wall time to the last one done."""
    gate = threading.Barrier(clients + 1)
    threads = [HttpClient(port, secret, n, gate) for _ in range(clients)]
    for thread in threads:
        thread.start()
    gate.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    errors = [thread.error for thread in threads if thread.error]
    if errors:
        raise SystemExit(f"{len(errors)} client(s) failed, first: {errors[0]}")
    wall = max(thread.finished_at for thread in threads) - start
    requests = clients * n
    connections = sum(thread.connections for thread in threads)
    note = "keep-alive" if connections == clients else f"{connections / requests:.0%} new connections"
    times = [t for thread in threads for t in thread.times_ms]
    return Line(label, clients, times, wall, note)


class Server:
    """One gunicorn with the prediction log on or off, and how many rows it has logged."""

    def __init__(self, args, secret: str, log_on: bool):
        self.log_on, self.secret = log_on, secret
        self.port = free_port()
        self.log_path = DATA_DIR / f"gunicorn-log-{'on' if log_on else 'off'}.log"
        self.process = start_gunicorn(self.port, args.workers, args.threads, self.log_path,
                                      {"PREDICTION_LOG": "1" if log_on else "0"})
        self.label = f"HTTP, gunicorn {args.workers}w x {args.threads}t, log {'on' if log_on else 'off'}"

    def measure(self, what: str, clients: int, n: int, logged: int) -> Line:
        """One line; with the log on, waits until its requests are all in the log."""
        line = measure_http(what, self.port, self.secret, clients, n)
        if self.log_on:
            line.logged = (logged, len(line.times_ms))
            check_logged(line)  # before the next line adds rows of its own
        return line


def measure_gunicorn(args, secret: str) -> list[Line]:
    """Both servers run side by side and take turns, `--rounds` times per number of clients,
    so a drift in the machine's speed hits both alike; each line pools its rounds."""
    servers = []
    try:
        for log_on in (False, True):
            logged = Prediction.objects.count()
            server = Server(args, secret, log_on)
            servers.append(server)
            answer = wait_until_up(server.port, secret, server.process, server.log_path)
            print(f"server (log {'on' if log_on else 'off'}) answers: {json.dumps(answer)}", flush=True)
            # Every worker process loads the model on its first request: warm all of them up.
            server.measure("warm-up", max(args.clients) * args.workers, 20, logged + 1)
        lines = []
        for clients in args.clients:
            pooled = {server.log_on: [] for server in servers}
            for _round in range(args.rounds):
                for server in servers:
                    line = server.measure(server.label, clients, requests_per_client(args, clients),
                                          Prediction.objects.count())
                    pooled[server.log_on].append(line)
            for server in servers:
                parts = pooled[server.log_on]
                line = Line(server.label, clients, [t for part in parts for t in part.times_ms],
                            sum(part.wall_s for part in parts), parts[0].note.split(";")[0])
                if server.log_on:
                    found = sum(part.found for part in parts)
                    line.note += f"; {'all ' if found == len(line.times_ms) else ''}{found} of {len(line.times_ms)} logged"
                lines.append(line)
        return lines
    finally:
        for server in servers:
            stop_gunicorn(server.process)


def check_logged(line: Line, timeout_s: float = 30.0):
    """Wait until every request of a "log on" line is in the prediction log (the web
    processes write every PREDICTION_LOG_FLUSH_SECONDS); note how many are missing."""
    if line.logged is None:
        return
    before, expected = line.logged
    deadline = time.monotonic() + timeout_s
    while (found := Prediction.objects.count() - before) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    line.found = found
    line.note = (line.note + "; " if line.note else "") + (
        f"all {expected} logged" if found == expected else f"{found} of {expected} logged")


# --- output ---------------------------------------------------------------------------------


def print_table(lines: list[Line]):
    header = ["", "clients", "requests", "p50 ms", "p90 ms", "p99 ms", "max ms", "req/s", ""]
    rows = [header] + [line.row() for line in lines]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = [cell.ljust(width) if i in (0, len(row) - 1) else cell.rjust(width)
                 for i, (cell, width) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())


def describe(args, version: ModelVersion) -> str:
    worker = "sync" if args.threads == 1 else "gthread"
    return (
        f"{MODEL_NAME} v{version.version}: RandomForest, {args.trees} trees; 1 instance per request; "
        f"gunicorn {args.workers} workers x {args.threads} threads ({worker}); "
        f"{os.cpu_count()} CPUs shared by clients and server (load average {os.getloadavg()[0]:.2f} at start); "
        f"Python {sys.version.split()[0]}"
    )


# --- main -----------------------------------------------------------------------------------


def requests_per_client(args, clients: int) -> int:
    if args.requests is not None:
        return args.requests
    return 500 if clients == 1 else 200


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=None,
                        help="Requests per client (default 500 with 1 client, 200 each with more); "
                             "also the number of in-process calls (default 500)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn --workers (default 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="gunicorn --threads (default 1: the sync worker; more: gthread)")
    parser.add_argument("--clients", default="1,8", help="Comma-separated numbers of concurrent clients")
    parser.add_argument("--trees", type=int, default=100, help="n_estimators of the trained forest (default 100)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="HTTP: turns the log-off and log-on servers take per number of clients (default 3)")
    parser.add_argument("--sample-rate", type=float, default=0.1,
                        help="PREDICTION_SAMPLE_RATE of the \"log on\" lines (default 0.1: 1 request in 10)")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary DATA_DIR (with gunicorn.log)")
    args = parser.parse_args(argv)
    try:
        args.clients = [int(part) for part in args.clients.split(",") if part.strip()]
    except ValueError:
        parser.error("--clients must be comma-separated integers, e.g. 1,8")
    for name in ("requests", "workers", "threads", "trees", "rounds"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1")
    if not 0 <= args.sample_rate <= 1:
        parser.error("--sample-rate is a share between 0 and 1")
    if not args.clients or min(args.clients) < 1:
        parser.error("--clients must be positive integers")
    return args


def bench(args):
    version, secret = train_and_deploy(args.trees)
    print(describe(args, version), flush=True)
    with override_settings(PREDICTION_SAMPLE_RATE=args.sample_rate):
        lines = measure_in_process(version, secret, requests_per_client(args, 1))
        lines += measure_gunicorn(args, secret)
    print_table(lines)
    print_log_cost(lines)


def print_log_cost(lines: list[Line]):
    """The p50 of each "log on" line minus that of its "log off" twin."""
    print("\nThe prediction log's cost (p50, log on − log off):")
    for line in lines:
        if ", log on" not in line.what:
            continue
        twin = next(other for other in lines if other.what == line.what.replace(", log on", ", log off")
                    and other.clients == line.clients)
        delta = line.percentile(50) - twin.percentile(50)
        print(f"  {line.what.replace(', log on', '')}, {line.clients} client(s): "
              f"{twin.percentile(50):.3f} → {line.percentile(50):.3f} ms ({delta:+.3f} ms)")


def _exit_on_sigterm(signum, frame):
    # Turn SIGTERM into SystemExit so the finally blocks stop gunicorn and clean up.
    raise SystemExit(128 + signum)


def main(argv=None):
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = None
    try:
        args = parse_args(argv)
        bench(args)
    finally:
        if args is not None and args.keep:
            print(f"kept {DATA_DIR}", file=sys.stderr)
        else:
            shutil.rmtree(DATA_DIR, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
