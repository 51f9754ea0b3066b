"""The latency harness: sane positive numbers, and the child's memory, not the parent's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.latency import bench_gguf, summarize_latency
from pipeline.stages.export_gguf import convert_to_f16


def test_child_process_numbers(tiny_hf: Path, tmp_path: Path) -> None:
    gguf = tmp_path / "tiny.F16.gguf"
    convert_to_f16(tiny_hf, gguf)
    # Hold ~1.5 GB here: a child started from a big parent inherits ru_maxrss across
    # fork+exec, which once made every artifact report the parent's 2.7 GB.
    ballast = np.ones(1_500_000_000 // 8)
    raw = bench_gguf(gguf, "You extract orders.", "{prompt}", ["Ann Lee wants 2 lamps", "hello"],
                     threads=1, n_ctx=256, max_tokens=8, warmup=1,
                     synthetic={"pp": 16, "tg": 8, "repeats": 2})
    assert ballast.sum() > 0
    assert len(raw["results"]) == 2
    stats = summarize_latency(raw)
    assert stats["load_s"] > 0 and stats["ttft_mean_s"] > 0
    assert stats["decode_tok_s"] > 0 and stats["prefill_tok_s"] > 0
    assert 10 < stats["peak_rss_mb"] < 1000, stats
    assert stats["pp_tok_s"] > 0 and stats["tg_tok_s"] > 0 and stats["tg_bare_tok_s"] > 0
    assert stats["pp_tok_s_p90"] > 0 and -100 < stats["harness_overhead_pct"] < 100
