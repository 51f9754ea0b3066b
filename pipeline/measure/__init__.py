"""Measuring artifacts (the bench stages' library): each artifact in a fresh process
(`child`, started by `latency.bench_artifact`), one runtime adapter per format (`runtimes`),
the bench's row loop (`bench.bench_rows`), agreement measures (`quality`) and the verdict and
quality gate (`verdict`). Scripts in `benchmarks/` call these; nothing here imports a stage.

Example:
    >>> from pipeline.measure.runtimes import stats
    >>> stats([3.0, 1.0, 2.0])["median"]
    2.0
"""
