"""A pipeline that fails in a middle step, to show how failures look and propagate."""

from app.pipelines import Params, param, pipeline


class FlakyParams(Params):
    fail: bool = param(True, help="Make the validate step fail (set false for a clean run)")
    transient_failures: int = param(
        0, ge=0, le=2, help="How many times extract fails before it works (it has 2 retries, 0.5 s apart, doubling)"
    )


flaky = pipeline(
    "flaky_demo",
    params=FlakyParams,
    description="Extracts records, validates them (fails on purpose by default) and publishes them.",
)


@flaky.step(retries=2, retry_delay=0.5, backoff=2)
def extract(ctx):
    """Read the records to check (retried twice if the source is briefly unavailable)."""
    if ctx.attempt <= ctx.params.transient_failures:
        raise ConnectionError(f"the source did not answer (attempt {ctx.attempt})")
    records = [{"id": i, "amount": i * 10} for i in range(5)] + [{"id": 5, "amount": -3}]
    ctx.logger.info("extracted %d records", len(records))
    return records


@flaky.step(after=[extract])
def validate(ctx, extract):
    """Reject the batch if any record has a negative amount."""
    bad = [r["id"] for r in extract if r["amount"] < 0]
    if bad and ctx.params.fail:
        ctx.logger.error("records with negative amounts: %s", bad)
        raise ValueError(f"{len(bad)} record(s) have a negative amount: ids {bad}")
    return [r for r in extract if r["amount"] >= 0]


@flaky.step(after=[validate])
def publish(ctx, validate):
    """Publish the validated records (never reached when validate fails)."""
    ctx.log_metric("published", len(validate))
    return len(validate)


@flaky.step(after=[extract])
def archive(ctx, extract):
    """Archive the raw records; independent of validation, so it still runs."""
    return len(extract)
