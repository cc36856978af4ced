"""Two-step pipelines for bench/outputs.py: `make` returns a DataFrame of BENCH_ROWS rows
(default 2,000,000; three numeric columns and a fourth of five region names, categorical or,
with BENCH_COLUMN=text, plain strings), `take` receives it through
the artifact store. `bench_outputs_parquet` declares format="parquet" for it,
`bench_outputs_pickle` format="pickle"; the step runs' save_seconds and load_seconds are what
the bench reads."""

import os

import numpy

from app.pipelines import pipeline

ROWS = int(os.environ.get("BENCH_ROWS", "2000000"))
COLUMN = os.environ.get("BENCH_COLUMN", "category")
REGIONS = ["north", "south", "east", "west", "centre"]


def frame(rows: int = ROWS, column: str = COLUMN):
    """The same DataFrame every time (seeded)."""
    import pandas  # only the bench needs pandas; the no-op pipelines beside this one do not

    rng = numpy.random.default_rng(7)
    codes = rng.integers(0, 5, rows)
    return pandas.DataFrame({
        "id": numpy.arange(rows, dtype="int64"),
        "amount": rng.normal(100, 15, rows),
        "score": rng.random(rows),
        "region": pandas.Categorical.from_codes(codes, REGIONS) if column == "category"
        else pandas.array(numpy.array(REGIONS)[codes], dtype="str"),
    })


def build(fmt: str):
    pipe = pipeline(f"bench_outputs_{fmt}", description=f"A {ROWS:,}-row DataFrame passed on as {fmt}.")

    @pipe.step(format=fmt, isolation="thread")
    def make(ctx):
        return frame()

    @pipe.step(isolation="thread")
    def take(ctx, make):
        return len(make)

    return pipe


parquet = build("parquet")
pickled = build("pickle")
