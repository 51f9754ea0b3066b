"""Training recipe trials: one build's kept teacher rows, several recipes and seeds, one table.

Trains the build's student (its `student_base` folder) on the build's kept rows (its `filter`
output) with the distill stage's own loop and chat format, then answers every eval prompt
with the fp32 student (greedy, batched on torch, as the `bench_student` row does) and scores
each eval set (hand-written, generated) with the task's metric and invented spans. The
quantized artifacts track the fp32 student within the target's gate (max_quant_loss), so this
ranks recipes at a fraction of a full build's cost; the chosen one is then built for real.

Example (the build's steps up to student_base run first, or come from its cache):
    .venv/bin/python -m benchmarks.recipe --epochs 2 --lr 1e-4 --seeds 0 1 2 \
        --out build/recipes.jsonl
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

UNTIL = "student_base"  # the last step a trial reads (prompts, filter and student_base)


def step_paths(root: Path, target: str) -> dict[str, Path]:
    """The default config's steps up to UNTIL, run or taken from the cache (as
    benchmarks.profiles does): step id -> output folder."""
    from pipeline.config import load_config
    from pipeline.runner import run_plan
    from pipeline.targets import load_target

    manifest = run_plan(load_config(None), load_target(target), root, until=UNTIL)
    return {s["step"]: Path(s["path"]) for s in manifest["steps"]}


def trial(paths: dict[str, Path], epochs: float, lr: float, seed: int, rows: int, eval_rows: int,
          batch_size: int, kept: Path | None = None) -> dict[str, Any]:
    """Train one student and score it; returns the row of the table."""
    import torch

    from pipeline.config import load_config
    from pipeline.measure.bench import score_answers
    from pipeline.measure.runtimes.torch_hf import TorchRuntime
    from pipeline.models.hf import load_causal_lm, load_tokenizer
    from pipeline.tasks import make_task
    from pipeline.tasks.inputs import EVAL_FILE, read_rows
    from pipeline.training.sft_data import kept_rows
    from pipeline.training.trainer import TrainSettings, train

    torch.set_num_threads(2)
    cfg = load_config(None)
    base = paths["student_base"]
    tok = load_tokenizer(base)
    examples, _, _ = kept_rows(tok, cfg.task.student_prompt,
                               kept or paths["filter"] / "kept.jsonl", cfg.distill.max_seq_len)
    examples = examples[: rows or None]
    settings = TrainSettings(seed=seed, batch_size=batch_size, epochs=epochs, learning_rate=lr,
                             warmup_ratio=cfg.distill.warmup_ratio, bf16=cfg.distill.bf16)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model, summary = train(load_causal_lm(base), examples, settings, tok.pad_token_id,
                               Path(tmp) / "train")
        train_s = time.perf_counter() - start
        model.save_pretrained(Path(tmp) / "model")
        tok.save_pretrained(Path(tmp) / "model")
        shutil.rmtree(Path(tmp) / "train", ignore_errors=True)
        runtime = TorchRuntime(str(Path(tmp) / "model"), 1024, 2)
        evals = read_rows(paths["prompts"] / EVAL_FILE)[: eval_rows or None]
        gens = runtime.chat_many([cfg.task.student_prompt.messages(r["prompt"]) for r in evals],
                                 cfg.bench.max_tokens)
    task = make_task(cfg.task.spec)
    quality = score_answers(task, [task.parse(g.text)[0] for g in gens], evals)
    sets = quality.get("sets", {quality.get("eval_set", "eval"): quality})
    return {"epochs": epochs, "lr": lr, "seed": seed, "examples": len(examples),
            "steps": summary["steps"], "train_s": round(train_s, 1),
            "precision": summary.get("precision"),
            **{f"{name}.{k}": q[k] for name, q in sets.items()
               for k in ("field_accuracy", "exact", "valid", "invented") if k in q}}


def mean_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The seeds' mean of every score column."""
    scores = [k for k in rows[0] if "." in k]
    return {"epochs": rows[0]["epochs"], "lr": rows[0]["lr"], "seed": "mean",
            **{k: round(statistics.mean(r[k] for r in rows), 4) for k in scores}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=Path("build"))
    parser.add_argument("--target", default="cpu-int4")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", type=int, default=0, help="first N kept rows (0: all)")
    parser.add_argument("--eval-rows", type=int, default=0, help="first N eval rows (0: all)")
    parser.add_argument("--kept", type=Path, default=None,
                        help="train rows in the filter's kept.jsonl format (default: the build's)")
    parser.add_argument("--out", type=Path, default=Path("build/recipes.jsonl"))
    args = parser.parse_args()
    paths = step_paths(args.build_dir, args.target)
    rows = []
    for seed in args.seeds:
        rows.append(trial(paths, args.epochs, args.lr, seed, args.rows, args.eval_rows,
                          args.batch_size, args.kept))
        print(json.dumps(rows[-1]))
    if len(rows) > 1:
        rows.append(mean_row(rows))
        print(json.dumps(rows[-1]))
    with args.out.open("a", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
