"""No-op pipelines for bench/step_overhead.py, built from the environment.

The bench process and the worker it starts both import this module (PIPELINES_PACKAGE=
bench.pipelines), so both build the same DAG from the same variables:

- BENCH_SHAPE: "chain" (step_0000 → step_0001 → … , N steps), "fanout" (root → N
  middle steps → sink, N + 2 steps) or "map" (root returns N items → a mapped step, one
  step run per item → sink takes the N results: N + 2 step runs that do work; the mapped
  step's own row, which only creates the items, is bookkeeping and not counted).
- BENCH_N: N (default 100).
- BENCH_STEP_MS: what each step does, in ms of waiting (default 0: nothing). A step that
  waits stands for one that waits on I/O or another service: what more workers speed up
  even on a machine whose cores the no-op bookkeeping already fills.

Defines `bench_warmup` (one step, used to wait until the worker is up), `bench_<shape>_<N>`
(each attempt in a supervised child process, the default) and `bench_<shape>_<N>_thread`
(the same DAG with `isolation="thread"`). Every step does nothing and returns None, and takes no inputs, so
what is measured is the engine's and the queue's own overhead per step.
"""

import os
import time

from app.pipelines import pipeline

SHAPES = ("chain", "fanout", "map")

SHAPE = os.environ.get("BENCH_SHAPE", "chain")
N = int(os.environ.get("BENCH_N", "100"))
STEP_SECONDS = float(os.environ.get("BENCH_STEP_MS", "0")) / 1000
if SHAPE not in SHAPES:
    raise ValueError(f"BENCH_SHAPE={SHAPE!r} is not one of {', '.join(SHAPES)}")
if N < 1:
    raise ValueError(f"BENCH_N={N} must be at least 1")

WARMUP_NAME = "bench_warmup"
NAME = f"bench_{SHAPE}_{N}"


def _noop(ctx):
    """Does nothing (or waits BENCH_STEP_MS)."""
    if STEP_SECONDS:
        time.sleep(STEP_SECONDS)
    return None


warmup = pipeline(WARMUP_NAME, description="One no-op step: the bench waits for it to know the worker is up.")
warmup.step(name="noop")(_noop)

def build(name, isolation):
    pipe = pipeline(
        name, description=f"{N} no-op steps as a {SHAPE} (benchmark of per-step overhead).", isolation=isolation
    )
    width = max(4, len(str(N)))
    if SHAPE == "map":
        @pipe.step(name="root")
        def root(ctx):
            return list(range(N))

        @pipe.map(over=root, name="item")
        def item(ctx, root):
            """Does nothing with its item (or waits BENCH_STEP_MS)."""
            return _noop(ctx)

        @pipe.step(name="sink")
        def sink(ctx, item):
            return _noop(ctx)
    elif SHAPE == "chain":
        previous = None
        for i in range(N):
            previous = pipe.step(after=[previous] if previous else [], name=f"step_{i:0{width}d}")(_noop)
    else:
        root = pipe.step(name="root")(_noop)
        middle = [pipe.step(after=[root], name=f"mid_{i:0{width}d}")(_noop) for i in range(N)]
        pipe.step(after=middle, name="sink")(_noop)
    return pipe


bench = build(NAME, "process")
THREAD_NAME = NAME + "_thread"
bench_thread = build(THREAD_NAME, "thread")
STEPS = N + 2 if SHAPE == "map" else len(bench.steps)  # step runs that run a function
