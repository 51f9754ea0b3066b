"""Experiment scripts (run from the repo root as `python -m benchmarks.<name>`): they call the
pipeline's public functions; the pipeline never imports them."""
