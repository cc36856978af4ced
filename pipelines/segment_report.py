"""Churn by customer segment: a tour of the pipeline API on data-shaped work.

- `customers` builds a table of synthetic customers (a pandas DataFrame, saved as Parquet)
  and is cached: a run with the same seed and size reuses the table of an earlier run.
- `segment_names` finds the segments big enough to score: a list known only at run time.
- `score` is mapped over that list: one step run per segment, each with its own status,
  log and retries; `report` receives the scores in order. Its `customers` parameter is an
  inferred edge: no `after=` anywhere.
- `churn_alert` runs only when a segment's churn rate is above the threshold (a condition):
  otherwise it is skipped, and the run still succeeds.

Its tests (pipelines/tests/test_segment_report.py) run it in process with `run_local`.
"""

import numpy as np
import pandas as pd

from app.pipelines import Params, param, pipeline, skip

SEGMENTS = ["students", "families", "retirees", "small business", "enterprise", "trial"]
SHARES = [0.22, 0.30, 0.18, 0.15, 0.10, 0.05]


class SegmentParams(Params):
    customers: int = param(20_000, ge=100, le=2_000_000, help="How many synthetic customers to generate")
    seed: int = param(7, ge=0, help="Random seed: the same seed and size give the same customers")
    min_customers: int = param(200, ge=1, le=1_000_000, help="Segments with fewer customers are not scored")
    alert_churn: float = param(0.25, ge=0.0, le=1.0, help="Flag segments whose churn rate is above this share")


segments = pipeline(
    "segment_report",
    params=SegmentParams,
    description="Generates customers, scores each segment big enough to matter (one step run per segment), "
    "reports churn by segment and flags the segments above the alert threshold.",
)


@segments.step(cache=True)
def customers(ctx):
    """Synthetic customers: segment, yearly spend, visits and whether they churned."""
    rng = np.random.default_rng(ctx.params.seed)
    n = ctx.params.customers
    segment = rng.choice(len(SEGMENTS), size=n, p=SHARES)
    visits = rng.poisson(lam=3 + segment, size=n)
    spend = rng.gamma(shape=2.0, scale=40.0 + 25 * segment, size=n).round(2)
    churn_odds = 0.35 - 0.04 * segment - 0.01 * np.minimum(visits, 10)
    table = pd.DataFrame({
        "segment": pd.Categorical.from_codes(segment, SEGMENTS),
        "spend": spend,
        "visits": visits,
        "churned": rng.random(n) < churn_odds.clip(0.02, 0.9),
    })
    ctx.logger.info("generated %d customers", n)
    return table


@segments.step()
def segment_names(ctx, customers):
    """The segments with at least min_customers customers, largest first."""
    counts = customers["segment"].value_counts()
    big = counts[counts >= ctx.params.min_customers]
    ctx.logger.info("%d of %d segments have at least %d customers", len(big), len(counts), ctx.params.min_customers)
    return [str(name) for name in big.index]


@segments.map(over=segment_names, retries=1)
def score(ctx, segment_names, customers):
    """One segment's size, spend and churn rate."""
    rows = customers[customers["segment"] == segment_names]
    churn = float(rows["churned"].mean())
    ctx.logger.info("%s: %d customers, churn %.1f%%", segment_names, len(rows), 100 * churn)
    return {
        "segment": segment_names,
        "customers": len(rows),
        "mean_spend": round(float(rows["spend"].mean()), 2),
        "mean_visits": round(float(rows["visits"].mean()), 2),
        "churn_rate": round(churn, 4),
    }


@segments.step()
def report(ctx, score):
    """The scored segments, highest churn first, as a table on the run page."""
    if not score:
        return skip("no segment has min_customers customers: nothing to report")
    table = sorted(score, key=lambda row: row["churn_rate"], reverse=True)
    ctx.log_table("Churn by segment", table)
    ctx.log_metric("segments_scored", len(table))
    ctx.log_metric("highest_churn", table[0]["churn_rate"])
    return table


def _above_threshold(ctx, report):
    return any(row["churn_rate"] > ctx.params.alert_churn for row in report)


@segments.step(when=_above_threshold)
def churn_alert(ctx, report):
    """Runs only when some segment churns more than alert_churn: names them."""
    flagged = [row["segment"] for row in report if row["churn_rate"] > ctx.params.alert_churn]
    ctx.logger.warning("churn above %.0f%% in: %s", 100 * ctx.params.alert_churn, ", ".join(flagged))
    ctx.tag("churn-alert")
    return flagged
