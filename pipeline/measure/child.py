"""Benchmark one artifact in this (fresh) process: answers, latency, peak RSS, scores.

The bench stage starts this module once per artifact, so load time and peak memory belong
to that artifact alone. A warm-up generation runs first and is not counted. Peak memory is
read before the teacher-forced scoring pass (its full-vocabulary logits are a measuring
cost, not a serving one).

Example:
    python -m pipeline.measure.child spec.json result.json
    # spec.json: {"runtime": "llama_cpp", "model": "m.gguf", "n_ctx": 1024, "threads": 2,
    #             "max_tokens": 96, "warmup": 1,
    #             "prompt": {"system": "...", "user_template": "{prompt}", "few_shot": []},
    #             "prompts": ["Hi, this is Ann Lee ..."],
    #             "latency_prompts": 16,   # timed one at a time; the rest batched (optional)
    #             "batched": true,         # ...even where batches round differently (optional)
    #             "untimed": true,         # none timed: a later block of a row (optional)
    #             "grammar": "...",        # answers under a task grammar (optional)
    #             "synthetic": {"pp": 128, "tg": 64, "repeats": 5},          # optional
    #             "score": {"texts": [{"tokens": [1, 2, 3], "start": 2}],     # optional
    #                       "reference": null, "save_reference": "ref.npy"}}
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.measure.runtimes import Runtime, open_runtime
from pipeline.prompts import ChatPrompt
from pipeline.runkit.bench import peak_rss_mb


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Generate for every prompt; return per-prompt timings, answers and scores."""
    start = time.perf_counter()
    rt = open_runtime(spec["runtime"], spec["model"], spec["n_ctx"], spec["threads"])
    load_s = time.perf_counter() - start
    if spec.get("grammar"):
        if not hasattr(rt, "constrain"):
            raise ValueError(f"the {spec['runtime']} runtime cannot constrain decoding")
        rt.constrain(spec["grammar"])
    chat = ChatPrompt.model_validate(spec["prompt"])
    for prompt in spec["prompts"][: spec["warmup"]]:
        rt.chat(chat.messages(prompt), spec["max_tokens"])
    # The first `latency_prompts` are answered one at a time, as one user would be served:
    # their timings are the latency columns. The rest only need their answers (quality):
    # batched where the runtime can (chat_many), greedy either way — where its batches round
    # differently (GGUF), only for a row that is not shipped and says so ("batched").
    prompts = spec["prompts"]
    timed = 0 if spec.get("untimed") else (spec.get("latency_prompts") or len(prompts))
    gens = [rt.chat(chat.messages(p), spec["max_tokens"]) for p in prompts[:timed]]
    many = getattr(rt, "chat_many", None)
    if spec.get("grammar") or not (getattr(rt, "batches_exactly", True) or spec.get("batched")):
        many = None
    rest = [chat.messages(p) for p in prompts[timed:]]
    gens += (many(rest, spec["max_tokens"]) if many and rest
             else [rt.chat(m, spec["max_tokens"]) for m in rest])
    results = [{"response": gen.text, "prompt_tokens": gen.prompt_tokens,
                "prefill_tokens": gen.prefill_tokens, "completion_tokens": gen.completion_tokens,
                "ttft_s": gen.ttft_s, "decode_s": gen.decode_s, "total_s": gen.total_s,
                "timed": i < timed} for i, gen in enumerate(gens)]
    synthetic = rt.synthetic(**spec["synthetic"]) if spec.get("synthetic") else None
    peak = peak_rss_mb()
    scores = score(rt, **spec["score"]) if spec.get("score") else None
    return {"runtime": spec["runtime"], "max_tokens": spec["max_tokens"], "load_s": load_s,
            "peak_rss_mb": peak,
            "results": results, "synthetic": synthetic, "scores": scores}


def score(rt: Runtime, texts: list[dict[str, Any]], reference: str | None = None,
          save_reference: str | None = None) -> dict[str, Any]:
    """Perplexity of the texts' tokens after `start`; with a reference's saved log-probs,
    mean KL(reference ‖ this) and top-1 agreement per position (llama-perplexity's
    --kl-divergence idea). Same token ids everywhere: only artifacts of one vocabulary."""
    rows = [rt.logprobs(t["tokens"], t["start"]) for t in texts]
    targets = np.concatenate([np.asarray(t["tokens"][t["start"]:]) for t in texts])
    mine = np.concatenate(rows)
    nll = -mine[np.arange(len(targets)), targets]
    out: dict[str, Any] = {"perplexity": float(np.exp(nll.mean())), "scored_tokens": len(targets)}
    if save_reference:
        np.save(save_reference, mine.astype(np.float16))  # half the bytes; KL error ~1e-4
    if reference:
        ref = np.load(reference).astype(np.float32)
        if ref.shape != mine.shape:
            out["kl_error"] = f"vocabulary or text mismatch: {ref.shape} vs {mine.shape}"
            return out
        kl = (np.exp(ref) * (ref - mine)).sum(axis=1)
        out["kl_vs_reference"] = float(kl.mean())
        out["kl_p99"] = float(np.quantile(kl, 0.99))
        out["top1_agreement"] = float((ref.argmax(axis=1) == mine.argmax(axis=1)).mean())
    return out


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    Path(argv[1]).write_text(json.dumps(run(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
