#!/usr/bin/env python
"""What passing a big DataFrame between two steps costs, Parquet against pickle:
`python bench/outputs.py [--rows 2000000 --repeat 5 --column category|text]`.

In one fresh SQLite DATA_DIR (the artifact store on this machine's disk), the two-step
pipelines of bench/pipelines/outputs.py run through the engine (`start_run` + `run_inline`,
the worker's code path, in this process): `make` returns a DataFrame of --rows rows (three
numeric columns and one of region names: categorical, or with --column text plain strings,
pandas' `str` dtype), declared as Parquet in one pipeline and as pickle in
the other, and `take` receives it. Read from the step runs: `save_s` (make's save_seconds:
the output written and put in the store), `load_s` (take's load_seconds: its input read back,
with the rest of preparing the step) and `bytes` (the file in the store).

The floor, measured on the same DataFrame in the same process, without the store or a disk:
`copy_s` (DataFrame.copy(): the least moving the data can cost), `dumps_s`/`loads_s`
(pickle.dumps / pickle.loads to and from bytes in memory) and `parquet_write_s`/`parquet_read_s`
(pyarrow writing and reading Parquet in memory). Prints one JSON line per measurement (the
median of --repeat runs, in seconds). Measures only: nothing here asserts.
"""

import argparse
import io
import json
import os
import pickle
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.site import run_in_temporary_site  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--column", choices=["category", "text"], default="category")
    args = parser.parse_args()
    run_in_temporary_site(
        "mlops-bench-outputs-", bench, args, DEBUG="0", PIPELINES_PACKAGE="bench.pipelines", BENCH_ROWS=str(args.rows),
        BENCH_COLUMN=args.column,
    )


def timed(call, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 4)


def bench(args):
    import pyarrow
    import pyarrow.parquet

    from app import artifacts
    from app.models import Status
    from app.runs import engine
    from bench.pipelines.outputs import frame

    value = frame(args.rows, args.column)
    pickled = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    table = pyarrow.Table.from_pandas(value)

    def parquet_bytes():
        sink = io.BytesIO()
        pyarrow.parquet.write_table(table, sink)
        return sink.getvalue()

    in_memory = parquet_bytes()
    floor = {
        "mode": "floor", "rows": args.rows, "column": args.column, "memory_bytes": int(value.memory_usage(deep=True).sum()),
        "copy_s": timed(lambda: value.copy(deep=True), args.repeat),
        "dumps_s": timed(lambda: pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), args.repeat),
        "loads_s": timed(lambda: pickle.loads(pickled), args.repeat), "pickle_bytes": len(pickled),
        "parquet_write_s": timed(lambda: pyarrow.Table.from_pandas(value) and parquet_bytes(), args.repeat),
        "parquet_read_s": timed(lambda: pyarrow.parquet.read_table(pyarrow.BufferReader(in_memory)).to_pandas(),
                                args.repeat),
        "parquet_bytes": len(in_memory),
    }
    print(json.dumps(floor), flush=True)
    del pickled, in_memory, table
    for fmt in ("parquet", "pickle"):
        saves, loads, sizes = [], [], []
        for _ in range(args.repeat):
            run = engine.run_inline(*engine.start_run(f"bench_outputs_{fmt}"))
            steps = {sr.step_name: sr for sr in run.step_runs.all()}
            assert run.status == Status.SUCCEEDED, {name: sr.error for name, sr in steps.items()}
            saves.append(steps["make"].save_seconds)
            loads.append(steps["take"].load_seconds)
            sizes.append(artifacts.size_of(steps["make"].output_path))
            artifacts.delete_tree(f"runs/{run.pk}")  # a run's files at a time on the disk
        save, load = statistics.median(saves), statistics.median(loads)
        save_floor, load_floor = ("dumps_s", "loads_s") if fmt == "pickle" else ("parquet_write_s", "parquet_read_s")
        print(json.dumps({
            "mode": fmt, "rows": args.rows, "column": args.column, "save_s": round(save, 4), "load_s": round(load, 4), "bytes": sizes[0],
            "save_over_floor": round(save / floor[save_floor], 2), "load_over_floor": round(load / floor[load_floor], 2),
            "cpus": os.cpu_count(),
        }), flush=True)


if __name__ == "__main__":
    main()
