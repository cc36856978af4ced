"""Pipelines used only by the benchmarks: point PIPELINES_PACKAGE=bench.pipelines at them."""
