"""A small data pipeline: one source fans out to three transforms that fan back in."""

import statistics
import time

from app.pipelines import Params, param, pipeline


class FanoutParams(Params):
    rows: int = param(1000, ge=1, le=1_000_000, help="How many numbers to generate")
    seed: int = param(7, ge=0, help="Random seed, so runs are reproducible")
    pause: float = param(0.0, ge=0, le=600, help="Seconds each summary step waits, to watch a run in progress")


fanout = pipeline(
    "fanout_demo",
    params=FanoutParams,
    description="Generates numbers, summarises them three ways in parallel, and merges the summaries.",
)


def pause(ctx):
    """Wait ctx.params.pause seconds, stopping at once if the run is cancelled."""
    deadline = time.monotonic() + ctx.params.pause
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


@fanout.step()
def load(ctx):
    """Generate the input rows (a deterministic pseudo-random sequence)."""
    value, rows = ctx.params.seed, []
    for _ in range(ctx.params.rows):
        value = (value * 1103515245 + 12345) % 2**31
        rows.append(value % 1000)
    ctx.logger.info("generated %d rows", len(rows))
    return rows


@fanout.step(after=[load])
def total(ctx, load):
    """Sum of all rows."""
    pause(ctx)
    return sum(load)


@fanout.step(after=[load])
def mean(ctx, load):
    """Arithmetic mean of the rows."""
    pause(ctx)
    result = statistics.fmean(load)
    ctx.log_metric("mean", result)
    return result


@fanout.step(after=[load])
def spread(ctx, load):
    """Standard deviation of the rows."""
    pause(ctx)
    result = statistics.pstdev(load)
    ctx.log_metric("stdev", result)
    return result


@fanout.step(after=[total, mean, spread])
def report(ctx, total, mean, spread):
    """Merge the three summaries into one report."""
    summary = {"total": total, "mean": round(mean, 3), "stdev": round(spread, 3)}
    print("report:", summary)
    return summary
