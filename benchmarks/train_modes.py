"""Training throughput, sequence-level vs logit-level KD, on the same student, rows and batches.

Runs the distill loop (pipeline.trainer) for a few steps in each mode from a finished build's
cache — the student base folder, the filter's kept rows and the teacher_logits step's top-k
cache — with the example config's settings (LoRA, bf16), no evals, no checkpoints, and
prints tokens/s per mode. Each mode starts from a fresh copy of the base model.

Example:
    .venv/bin/python -m benchmarks.train_modes --config examples/qwen-1.5b-to-0.5b.toml \
        --base build/cache/student_base/<key> --data build/cache/filter/<key> \
        --topk build/cache/teacher_logits/<key> --steps 6
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from pipeline.config import load_config
    from pipeline.models.hf import load_causal_lm, load_tokenizer
    from pipeline.sft_data import kept_rows, prompt_settings
    from pipeline.stages.distill import with_lora
    from pipeline.topk_cache import load_cached
    from pipeline.trainer import KD, steps_per_epoch, train

    cfg = load_config(args.config)
    s = {**cfg.distill.model_dump(), **prompt_settings(cfg), "checkpoint_every": 0}
    torch.set_num_threads(s["threads"])
    tok = load_tokenizer(args.base)
    examples, _, _ = kept_rows(tok, s, args.data / "kept.jsonl")
    decision = json.loads((args.topk / "decision.json").read_text())
    s["epochs"] = args.steps / steps_per_epoch(len(examples), s["batch_size"], 1)
    rows = []
    for mode in ("sequence", "logits"):
        kd = None if mode == "sequence" else KD(
            s["kd_loss"], s["kd_weight"], s["temperature"], s["beta"], decision["shared_vocab"],
            cached=load_cached(args.topk))
        model = with_lora(load_causal_lm(args.base), s)
        with tempfile.TemporaryDirectory() as out:
            _, summary = train(model, examples, s, tok.pad_token_id, Path(out), None, kd)
        rows.append({"mode": mode, "steps": summary["steps"], "tokens": summary["train_tokens"],
                     "wall_s": summary["train_wall_s"], "tokens_per_s": summary["train_tokens_per_s"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--topk", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=6)
    measure(parser.parse_args())


if __name__ == "__main__":
    main()
