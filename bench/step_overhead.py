#!/usr/bin/env python
"""Per-step overhead of the engine: N no-op steps end to end, three ways.

    .venv/bin/python bench/step_overhead.py --shape chain --n 100
    .venv/bin/python bench/step_overhead.py --shape fanout --n 100 --workers 4
    .venv/bin/python bench/step_overhead.py --shape map --n 1000 --modes floor,worker   # vs --shape chain --n 1000
    .venv/bin/python bench/step_overhead.py --backend postgres --shape fanout --n 1000 --processes 3
    .venv/bin/python bench/step_overhead.py --backend postgres --shape fanout --n 100 --step-ms 100 --processes 3

Modes, each printed as one JSON line:

- floor:  the same number of no-op function calls, each followed by one INSERT and a
          commit in a plain sqlite3 database (WAL, synchronous=NORMAL, like ours) in the
          same data directory. Roughly the least any SQLite-backed engine can do per step.
- sync:   the pipeline through `engine.start_run` + `engine.run_inline` in this process
          (what `run_pipeline --sync` does).
- worker: the pipeline through the queue: `tasks.trigger` in this process, executed by a
          real `manage.py run_huey` subprocess, each attempt in a supervised child process
          (the default isolation); wall time from the trigger to the run row being finished
          (polled). Worker start-up is not timed: a one-step warm-up run is waited for first.
- worker_thread: the same DAG with isolation="thread" on the same worker, alternating
          with `worker` run by run, so the two are measured side by side.

Then one line with the ratios sync/floor and worker/floor and the targets.

Everything happens in a fresh temporary DATA_DIR (database, queue, artifacts), removed
at the end; the worker is always stopped. Measurement only: nothing here asserts timings.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TARGET_WORKER_MS_PER_STEP = 5.0  # chain of 100 through the worker, steps in child processes
TARGET_FANOUT_MS_PER_STEP = 8.0  # 1 → 1000 → 1 through 3 workers on PostgreSQL + Redis
TARGET_SYNC_OVER_FLOOR = 3.0


# --- peak RSS -------------------------------------------------------------------------


class PeakRSS:
    """Peak resident memory of a process over a measured stretch.

    On Linux, resets the kernel's high-water mark (/proc/PID/clear_refs, "5") at start
    and reads VmHWM at the end; elsewhere, or if the reset is refused, samples the RSS
    with psutil every 10 ms in a thread.
    """

    def __init__(self, pid: int):
        self.pid = pid
        self._samples = 0
        self._stop = threading.Event()
        self._thread = None
        self.method = "VmHWM"

    def _read_hwm_kb(self):
        with open(f"/proc/{self.pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise OSError("no VmHWM")

    def start(self):
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as handle:
                handle.write("5")
            self._read_hwm_kb()
        except OSError:
            self.method = "psutil"
            import psutil

            process = psutil.Process(self.pid)

            def sample():
                while not self._stop.is_set():
                    try:
                        self._samples = max(self._samples, process.memory_info().rss)
                    except psutil.Error:
                        return
                    self._stop.wait(0.01)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def stop_mb(self) -> float:
        if self.method == "VmHWM":
            return round(self._read_hwm_kb() / 1024, 1)
        self._stop.set()
        self._thread.join()
        return round(self._samples / 2**20, 1)


# --- helpers --------------------------------------------------------------------------


def result_line(mode, args, steps, wall_s, peak_rss_mb, **extra):
    line = {
        "mode": mode,
        "shape": args.shape,
        "n": args.n,
        "steps": steps,
        "wall_s": round(wall_s, 4),
        "per_step_ms": round(1000 * wall_s / steps, 3),
        "peak_rss_mb": peak_rss_mb,
    }
    line.update(extra)
    print(json.dumps(line), flush=True)
    return line


def shape_note(shape, n, steps):
    if shape == "chain":
        return f"chain of {n} steps"
    if shape == "map":
        return f"map 1->{n} items->1: a root returning {n} items, one step run per item and a sink = {steps} step runs"
    return f"fan-out 1->{n}->1: a root, {n} middle steps and a sink = {steps} steps"


# --- the three modes --------------------------------------------------------------------


def measure_floor(args, data_dir: Path, steps: int):
    """N no-op calls, each followed by one row written and committed (WAL, like ours; on
    PostgreSQL, one INSERT and COMMIT over the same kind of connection)."""

    def noop(ctx):
        return None

    if args.backend == "postgres":
        return measure_postgres_floor(args, steps, noop)

    path = data_dir / f"floor-{time.monotonic_ns()}.sqlite3"
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE step (id INTEGER PRIMARY KEY, run INTEGER, name TEXT, status TEXT, finished_at REAL)"
        )
        conn.commit()
        peak = PeakRSS(os.getpid()).start()
        start = time.perf_counter()
        for i in range(steps):
            noop(None)
            conn.execute(
                "INSERT INTO step (run, name, status, finished_at) VALUES (?, ?, ?, ?)",
                (1, f"step_{i}", "succeeded", time.time()),
            )
            conn.commit()
        wall = time.perf_counter() - start
        rss = peak.stop_mb()
    finally:
        conn.close()
    return result_line("floor", args, steps, wall, rss)


def measure_postgres_floor(args, steps: int, noop):
    import psycopg

    conn = psycopg.connect(os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_floor (id serial PRIMARY KEY, run int, name text, status text, "
            "finished_at double precision)"
        )
        conn.commit()
        peak = PeakRSS(os.getpid()).start()
        start = time.perf_counter()
        for i in range(steps):
            noop(None)
            conn.execute(
                "INSERT INTO bench_floor (run, name, status, finished_at) VALUES (%s, %s, %s, %s)",
                (1, f"step_{i}", "succeeded", time.time()),
            )
            conn.commit()
        wall = time.perf_counter() - start
        rss = peak.stop_mb()
    finally:
        conn.close()
    return result_line("floor", args, steps, wall, rss)


def measure_design_floor(args, data_dir: Path, steps: int):
    """The least our durability rules allow: per step, a claim committed before the step
    runs, its output pickled to a file and renamed into place, and its result committed."""
    path = data_dir / f"design-floor-{time.monotonic_ns()}.sqlite3"
    out_dir = data_dir / "design-floor-artifacts"
    out_dir.mkdir(exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE step (id INTEGER PRIMARY KEY, status TEXT, started REAL, finished REAL)")
        conn.executemany("INSERT INTO step (id, status) VALUES (?, 'queued')", [(i,) for i in range(steps)])
        peak = PeakRSS(os.getpid()).start()
        start = time.perf_counter()
        for i in range(steps):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE step SET status='running', started=? WHERE id=? AND status='queued'", (time.time(), i))
            conn.execute("COMMIT")
            target = out_dir / f"step_{i}.pkl"
            tmp = out_dir / f".step_{i}.tmp"
            tmp.write_bytes(pickle.dumps(None))
            os.replace(tmp, target)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE step SET status='succeeded', finished=? WHERE id=? AND status='running'", (time.time(), i))
            conn.execute("COMMIT")
        wall = time.perf_counter() - start
        rss = peak.stop_mb()
    finally:
        conn.close()
    return result_line("design_floor", args, steps, wall, rss)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def measure_sync(args, steps: int, pipeline_name: str):
    from app.runs import engine

    peak = PeakRSS(os.getpid()).start()
    cpu = cpu_seconds(os.getpid())
    start = time.perf_counter()
    run, ready = engine.start_run(pipeline_name, {}, source="cli")
    run = engine.run_inline(run, ready)
    wall = time.perf_counter() - start
    cpu = cpu_seconds(os.getpid()) - cpu
    rss = peak.stop_mb()
    if run.status != "succeeded":
        raise SystemExit(f"sync run #{run.pk} ended {run.status}")
    return result_line("sync", args, steps, wall, rss, run_id=run.pk, cpu_ms_per_step=round(1000 * cpu / steps, 3))


def wait_finished(run_id, deadline, worker, log_path, poll_s):
    """Poll the run row until it is finished; fail early if the worker died."""
    from django.db import connection

    from app.models import FINISHED, Run

    # Raw SQL: an ORM query costs ~0.4 ms of CPU here, which at a 2 ms poll would take a
    # noticeable share of a 2-core machine away from the worker being measured.
    sql = f"SELECT status FROM {Run._meta.db_table} WHERE id = %s"
    while True:
        with connection.cursor() as cursor:
            cursor.execute(sql, [run_id])
            (status,) = cursor.fetchone()
        if status in FINISHED:
            return status
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited with {worker.returncode}:\n{tail(log_path)}")
        if time.monotonic() > deadline:
            raise SystemExit(f"run #{run_id} did not finish in time (status {status}):\n{tail(log_path)}")
        time.sleep(poll_s)


def tail(path: Path, lines=30):
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no worker log)"


def start_worker(env, log_path: Path):
    log = open(log_path, "wb")
    try:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "run_huey"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches the bench, whose finally stops it
        )
    finally:
        log.close()


def stop_worker(worker):
    if worker.poll() is not None:
        return
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=15)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def measure_worker(args, env, data_dir: Path, steps: int, pipelines: dict, warmup_name: str, repeat: int):
    """Each of `pipelines` ({mode: pipeline name}) `repeat` times, alternating, on one worker."""
    from app.runs import tasks

    log_path = data_dir / "worker.log"
    worker = start_worker(env, log_path)
    others = [start_worker(env, data_dir / f"worker-{i}.log") for i in range(1, args.processes)]
    lines = {mode: [] for mode in pipelines}
    try:
        # Start-up (imports, checks, connecting) is not timed: wait for a one-step run.
        warm = tasks.trigger(warmup_name, {}, source="cli")
        status = wait_finished(warm.pk, time.monotonic() + args.startup_timeout, worker, log_path, 0.02)
        if status != "succeeded":
            raise SystemExit(f"warm-up run #{warm.pk} ended {status}:\n{tail(log_path)}")
        for _ in range(repeat):
            for mode, pipeline_name in pipelines.items():
                lines[mode].append(run_on_worker(args, worker, log_path, steps, pipeline_name, mode))
    finally:
        for process in [worker, *others]:
            stop_worker(process)
    return lines


def run_on_worker(args, worker, log_path, steps, pipeline_name, mode="worker"):
    from app.models import Run
    from app.runs import tasks

    peak = PeakRSS(worker.pid).start()
    cpu = cpu_seconds(worker.pid)
    start = time.perf_counter()
    run = tasks.trigger(pipeline_name, {}, source="cli")
    status = wait_finished(run.pk, time.monotonic() + args.timeout, worker, log_path, args.poll_ms / 1000)
    wall = time.perf_counter() - start
    cpu = cpu_seconds(worker.pid) - cpu
    rss = peak.stop_mb()
    if status != "succeeded":
        raise SystemExit(f"run #{run.pk} ended {status}:\n{tail(log_path)}")
    row = Run.objects.get(pk=run.pk)
    db_wall = (row.finished_at - row.created_at).total_seconds()
    first_start = row.started_at - row.created_at
    return result_line(
        mode,
        args,
        steps,
        wall,
        rss,
        run_id=run.pk,
        workers=int(os.environ.get("HUEY_WORKERS", "4")),
        processes=args.processes,
        backend=args.backend,
        cpu_ms_per_step=round(1000 * cpu / steps, 3),
        db_wall_s=round(db_wall, 4),
        first_step_latency_ms=round(first_start.total_seconds() * 1000, 2),
    )


# --- main -------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=["chain", "fanout", "map"], default="chain")
    parser.add_argument("--n", type=int, default=100, help="Steps in the chain, or middle steps of the fan-out")
    parser.add_argument("--workers", type=int, default=None, help="HUEY_WORKERS for the worker (default: env or 4)")
    parser.add_argument("--repeat", type=int, default=1, help="Measure each mode this many times (default 1)")
    parser.add_argument(
        "--modes",
        default="floor,design_floor,sync,worker,worker_thread",
        help="Comma-separated subset of floor,design_floor,sync,worker (steps in supervised child processes, "
        "the default isolation),worker_thread (isolation='thread') (default all)",
    )
    parser.add_argument("--timeout", type=float, default=None, help="Seconds a measured run may take")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite",
                        help="postgres: a throwaway PostgreSQL + Redis (tests.servers), started and stopped here")
    parser.add_argument("--processes", type=int, default=1, help="Worker processes (default 1)")
    parser.add_argument("--step-ms", type=float, default=0,
                        help="Each step waits this long (as on I/O) instead of doing nothing (default 0)")
    parser.add_argument("--startup-timeout", type=float, default=120, help="Seconds to wait for the worker")
    parser.add_argument("--poll-ms", type=float, default=2, help="How often the run row is polled (default 2 ms)")
    parser.add_argument("--debug", action="store_true", help="Run with DEBUG=1 (Django records every query)")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary DATA_DIR (printed to stderr)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(args.modes) - {"floor", "design_floor", "sync", "worker", "worker_thread"}
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    if args.backend == "postgres" and "design_floor" in args.modes:
        args.modes.remove("design_floor")  # its SQLite file is the point of it
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.step_ms < 0:
        parser.error("--step-ms must be at least 0")
    if args.timeout is None:
        args.timeout = max(60.0, args.n * 0.5)
    return args


def _exit_on_sigterm(signum, frame):
    # Turn SIGTERM into SystemExit so the finally blocks stop the worker and clean up.
    raise SystemExit(128 + signum)


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    data_dir = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    try:
        if args.backend == "postgres":
            if str(ROOT) not in sys.path:
                sys.path.insert(0, str(ROOT))
            from tests.servers import servers

            with servers() as urls:
                os.environ["DATABASE_URL"] = urls["TEST_DATABASE_URL"]
                os.environ["HUEY_REDIS_URL"] = urls["TEST_REDIS_URL"]
                return bench(args, data_dir)
        return bench(args, data_dir)
    finally:
        if args.keep:
            print(f"kept {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def bench(args, data_dir: Path):
    # Everything Django reads must be in the environment before django.setup(), and the
    # worker gets the same environment, so both build the same no-op pipeline.
    settings_env = {
        # A variant settings module (e.g. to try other queue options) may be given in the
        # environment; it must be importable by both processes (PYTHONPATH).
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "app.settings"),
        "DATA_DIR": str(data_dir),
        "PIPELINES_PACKAGE": "bench.pipelines",
        "BENCH_SHAPE": args.shape,
        "BENCH_N": str(args.n),
        "BENCH_STEP_MS": str(args.step_ms),
        "DEBUG": "1" if args.debug else "0",
        "SECRET_KEY": "bench-only-not-secret",
        "HUEY_IMMEDIATE": "0",
        "LOG_LEVEL": "WARNING",
    }
    if args.workers is not None:
        settings_env["HUEY_WORKERS"] = str(args.workers)
    os.environ.update(settings_env)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    import django

    django.setup()

    from django.core.management import call_command

    from app.pipelines.registry import registry
    from bench.pipelines import noop

    call_command("migrate", verbosity=0)
    problems = registry.problems()
    pipe = registry.get(noop.NAME)
    if pipe is None or registry.get(noop.WARMUP_NAME) is None:
        raise SystemExit(f"bench pipelines are not valid: {problems or registry.import_errors}")
    steps = noop.STEPS
    # A one-time, per-process cost (reading the step sources and hashing them) is kept out
    # of the sync figure; the worker pays it during the measured run, once per process.
    pipe.snapshot()

    print(
        json.dumps(
            {
                "bench": "step_overhead",
                "shape": args.shape,
                "n": args.n,
                "steps": steps,
                "what": shape_note(args.shape, args.n, steps),
                "python": sys.version.split()[0],
                "cpus": os.cpu_count(),
                "debug": args.debug,
                "settings": os.environ["DJANGO_SETTINGS_MODULE"],
                "backend": args.backend,
                "worker_processes": args.processes,
                "step_ms": args.step_ms,
            }
        ),
        flush=True,
    )

    results = {"floor": [], "design_floor": [], "sync": [], "worker": [], "worker_thread": []}
    if "floor" in args.modes:
        for _ in range(args.repeat):
            results["floor"].append(measure_floor(args, data_dir, steps))
    if "design_floor" in args.modes:
        for _ in range(args.repeat):
            results["design_floor"].append(measure_design_floor(args, data_dir, steps))
    if "sync" in args.modes:
        for _ in range(args.repeat):
            results["sync"].append(measure_sync(args, steps, noop.NAME))
    on_worker = {"worker": noop.NAME, "worker_thread": noop.THREAD_NAME}
    on_worker = {mode: name for mode, name in on_worker.items() if mode in args.modes}
    if on_worker:
        worker_env = dict(os.environ)
        results.update(measure_worker(args, worker_env, data_dir, steps, on_worker, noop.WARMUP_NAME, args.repeat))

    per_step = {
        mode: round(statistics.median(line["per_step_ms"] for line in lines), 3)
        for mode, lines in results.items()
        if lines
    }
    summary = {"ratios": {}, "median_per_step_ms": per_step, "targets": {}}
    floor = per_step.get("floor")
    if floor:
        for mode in ("sync", "worker", "worker_thread"):
            if mode in per_step:
                summary["ratios"][f"{mode}/floor"] = round(per_step[mode] / floor, 1)
    design_floor = per_step.get("design_floor")
    if design_floor:
        for mode in ("sync", "worker", "worker_thread"):
            if mode in per_step:
                summary["ratios"][f"{mode}/design_floor"] = round(per_step[mode] / design_floor, 1)
    if "sync/floor" in summary["ratios"]:
        got = summary["ratios"]["sync/floor"]
        met = got <= TARGET_SYNC_OVER_FLOOR
        summary["targets"]["sync/floor"] = {"target": TARGET_SYNC_OVER_FLOOR, "got": got, "met": met}
    if "worker" in per_step and not args.step_ms:  # the targets are for no-op steps
        got = per_step["worker"]
        if args.shape == "fanout":
            key, target = "fanout_worker_ms_per_step", TARGET_FANOUT_MS_PER_STEP
            if (args.n, args.processes, args.backend) != (1000, 3, "postgres"):
                key += " (the target is for 1 → 1000 → 1 on 3 workers, PostgreSQL)"
        else:
            key, target = "worker_ms_per_step", TARGET_WORKER_MS_PER_STEP
            if args.n != 100:
                key += " (the target is for a chain of 100)"
        summary["targets"][key] = {"target": target, "got": got, "met": got <= target}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
