"""Benchmark harness: per-artifact latency in fresh processes, quality, and the report."""
