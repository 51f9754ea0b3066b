"""Benchmark one artifact (GGUF file or HF folder) in a fresh subprocess and summarize it.

Example:
    python -c "from pipeline.measure.latency import bench_artifact; from pathlib import Path; \
        from pipeline.prompts import ChatPrompt; \
        print(bench_artifact(Path('m.gguf'), ChatPrompt(system='sys'), ['hi'], threads=2))"
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pipeline.prompts import ChatPrompt


def bench_artifact(model: Path, prompt: ChatPrompt, prompts: list[str],
                   threads: int, n_ctx: int = 1024, max_tokens: int = 96, warmup: int = 1,
                   synthetic: dict[str, int] | None = None,
                   score: dict[str, Any] | None = None, runtime: str | None = None,
                   latency_prompts: int = 0, grammar: str | None = None,
                   batched: bool = False, untimed: bool = False) -> dict[str, Any]:
    """Run pipeline.measure.child in a child process; return its raw per-prompt results.

    `runtime` names the adapter (the format table's); without it, it is guessed from the
    artifact: a .gguf runs on llama.cpp, an HF folder on torch.
    `synthetic` = {"pp": N, "tg": M, "repeats": R} adds llama-bench-style fixed-length tests;
    `score` = {"texts": [...], "reference": path, "save_reference": path} adds perplexity
    and KL/top-1 against a reference (see pipeline.measure.child.score).
    `latency_prompts` > 0: only the first that many are timed one at a time, the rest
    answered batched where the runtime can (0: every prompt timed); `batched`: also where its
    batches round differently from one-at-a-time answers (GGUF) — for rows not shipped;
    `untimed`: no prompt timed (a later block of answers for a row already timed).
    `grammar`: answers constrained to it (pipeline.constrain; runtimes with `constrain`).
    """
    from pipeline.measure.contention import load_between, snapshot
    from pipeline.measure.runtimes import runtime_for

    spec = {"runtime": runtime or runtime_for(model), "model": str(model), "n_ctx": n_ctx,
            "threads": threads, "max_tokens": max_tokens, "warmup": warmup,
            "prompt": prompt.model_dump(mode="json"), "prompts": prompts, "synthetic": synthetic,
            "score": score, "latency_prompts": latency_prompts, "grammar": grammar,
            "batched": batched, "untimed": untimed}
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        before = snapshot()
        proc = subprocess.run([sys.executable, "-m", "pipeline.measure.child", str(spec_path),
                               str(out_path)], capture_output=True, text=True, check=False)
        load = load_between(before, snapshot())  # was anything else running meanwhile?
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"benchmark of {model.name} failed: {tail}")
        return {**json.loads(out_path.read_text()), "load": load}


def summarize_latency(raw: dict[str, Any]) -> dict[str, float]:
    """Mean TTFT, aggregate decode/prefill tokens/s on the task prompts, load time, peak RSS,
    and the fixed-length (llama-bench style) medians when they were run."""
    # only the prompts answered one at a time carry a single user's latency
    res = [r for r in raw["results"] if r.get("timed", True)]
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
        "mean_prompt_tokens": round(statistics.fmean(r["prompt_tokens"] for r in raw["results"]), 1),
        "mean_completion_tokens": round(statistics.fmean(r["completion_tokens"]
                                                         for r in raw["results"]), 1),
        "latency_prompts": len(res),
        **_truncated(raw),
        "peak_rss_mb": round(raw["peak_rss_mb"], 1),
        **raw.get("load", {}),
        **_synthetic_columns(raw.get("synthetic")),
        **_score_columns(raw.get("scores")),
    }


def _truncated(raw: dict[str, Any]) -> dict[str, float]:
    """The share of answers that stopped at max_tokens, not at the end of sequence (cut off)."""
    if "max_tokens" not in raw:
        return {}
    return {"truncated": round(statistics.fmean(r["completion_tokens"] >= raw["max_tokens"]
                                                for r in raw["results"]), 4)}


def _synthetic_columns(syn: dict[str, Any] | None) -> dict[str, float]:
    """Flatten the llama-bench-style results into report columns."""
    if not syn:
        return {}
    out = {"pp_tok_s": round(syn["pp_tok_s"]["median"], 1),
           "pp_tok_s_p90": round(syn["pp_tok_s"]["p90"], 1),
           "tg_tok_s": round(syn["tg_harness_tok_s"]["median"], 1),
           "tg_tok_s_p90": round(syn["tg_harness_tok_s"]["p90"], 1)}
    if "tg_bare_tok_s" in syn:  # only llama.cpp has a bare loop to compare the harness with
        out |= {"tg_bare_tok_s": round(syn["tg_bare_tok_s"]["median"], 1),
                "harness_overhead_pct": syn["harness_overhead_pct"]}
    return out


def _score_columns(scores: dict[str, Any] | None) -> dict[str, Any]:
    """Perplexity, and KL / top-1 agreement vs the fp32 distilled student where measured."""
    if not scores:
        return {}
    keep = ("perplexity", "scored_tokens", "kl_vs_reference", "kl_p99", "top1_agreement",
            "kl_error")
    return {k: (round(v, 5) if isinstance(v, float) else v)
            for k, v in scores.items() if k in keep}
