"""Measurement scripts (not part of the app). See docs/benchmarks.md."""
