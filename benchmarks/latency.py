"""Benchmark one GGUF artifact in a fresh subprocess and summarize quality and latency.

Example:
    python -c "from benchmarks.latency import bench_gguf; from pathlib import Path; \
        print(bench_gguf(Path('m.gguf'), 'sys', '{prompt}', ['hi'], threads=2))"
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def bench_gguf(model: Path, system: str, user_template: str, prompts: list[str], threads: int,
               n_ctx: int = 1024, max_tokens: int = 96, warmup: int = 1,
               synthetic: dict[str, int] | None = None) -> dict[str, Any]:
    """Run benchmarks.gguf_run in a child process; return its raw per-prompt results.

    `synthetic` = {"pp": N, "tg": M, "repeats": R} adds llama-bench-style fixed-length tests.
    """
    spec = {"model": str(model), "n_ctx": n_ctx, "threads": threads, "max_tokens": max_tokens,
            "warmup": warmup, "system": system, "user_template": user_template,
            "prompts": prompts, "synthetic": synthetic}
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.run([sys.executable, "-m", "benchmarks.gguf_run", str(spec_path),
                               str(out_path)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"benchmark of {model.name} failed: {tail}")
        return json.loads(out_path.read_text())


def summarize_latency(raw: dict[str, Any]) -> dict[str, float]:
    """Mean TTFT, aggregate decode/prefill tokens/s on the task prompts, load time, peak RSS,
    and the fixed-length (llama-bench style) medians when they were run."""
    res = raw["results"]
    decode_tokens = sum(max(r["completion_tokens"] - 1, 0) for r in res)
    decode_s = sum(r["decode_s"] for r in res)
    prefill_tokens = sum(r["prefill_tokens"] for r in res)
    ttfts = [r["ttft_s"] for r in res]
    return {
        "load_s": round(raw["load_s"], 3),
        "ttft_mean_s": round(statistics.fmean(ttfts), 4),
        "ttft_p90_s": round(sorted(ttfts)[int(0.9 * (len(ttfts) - 1))], 4),
        "prefill_tok_s": round(prefill_tokens / sum(ttfts), 1) if sum(ttfts) > 0 else 0.0,
        "decode_tok_s": round(decode_tokens / decode_s, 1) if decode_s > 0 else 0.0,
        "mean_prompt_tokens": round(statistics.fmean(r["prompt_tokens"] for r in res), 1),
        "mean_completion_tokens": round(statistics.fmean(r["completion_tokens"] for r in res), 1),
        "peak_rss_mb": round(raw["peak_rss_mb"], 1),
        **_synthetic_columns(raw.get("synthetic")),
    }


def _synthetic_columns(syn: dict[str, Any] | None) -> dict[str, float]:
    """Flatten the llama-bench-style results into report columns."""
    if not syn:
        return {}
    return {"pp_tok_s": round(syn["pp_tok_s"]["median"], 1),
            "pp_tok_s_p90": round(syn["pp_tok_s"]["p90"], 1),
            "tg_tok_s": round(syn["tg_harness_tok_s"]["median"], 1),
            "tg_tok_s_p90": round(syn["tg_harness_tok_s"]["p90"], 1),
            "tg_bare_tok_s": round(syn["tg_bare_tok_s"]["median"], 1),
            "harness_overhead_pct": syn["harness_overhead_pct"]}
