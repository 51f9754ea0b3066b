"""Teacher throughput, side by side: a naive one-prompt-at-a-time loop vs what the teacher stage does.

All modes run the same GGUF, threads and prompts (the default task's train split, teacher
prompt with its few-shot prefix) in one process, greedy, and must produce the same answers:
- naive: clears the KV cache before each prompt, so the whole few-shot prefix is prefilled
  every time;
- prefix_reuse: one prompt at a time, the shared prefix's KV cache kept (concurrency = 1);
- batched: the stage's default — prefix prefilled once, `--parallel` rows decoded together.

Example:
    .venv/bin/python -m benchmarks.teacher_throughput --rows 32 --parallel 32
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def measure(model: Path, rows: int, threads: int, parallel: int) -> dict[str, float]:
    """rows/min and prefill tokens per row of each mode on the first `rows` prompts."""
    from pipeline.config import load_config
    from pipeline.generation.llm import ChatRunner, open_gguf
    from pipeline.generation.llm_batch import BatchedChat
    from pipeline.tasks import make_task
    from pipeline.tasks.inputs import load_rows

    task = load_config(None).task  # the default task: its train prompts and teacher prompt
    prompts = [r["prompt"] for r in load_rows(Path(str(task.train_data)), "train data",
                                              make_task(task.spec))][:rows]
    runner = ChatRunner(open_gguf(model, 2048, threads))
    runner.chat_messages(task.teacher_prompt.messages(prompts[0]), 8)  # warm-up (load, first graph)
    chats = [task.teacher_prompt.messages(p) for p in prompts]
    out: dict[str, float] = {"rows": rows, "threads": threads, "parallel": parallel}
    answers: dict[str, list[str]] = {}
    for mode in ("naive", "prefix_reuse", "batched"):
        start = time.perf_counter()
        if mode == "batched":
            done = dict(BatchedChat(runner, parallel, threads).generate(chats, 96))
            gens = [done[i] for i in range(rows)]
        else:
            gens = []
            for chat in chats:
                if mode == "naive":
                    runner.llm.reset()  # forget the cache: every prompt is prefilled in full
                gens.append(runner.chat_messages(chat, 96))
        wall = time.perf_counter() - start
        answers[mode] = [g.text for g in gens]
        out[f"{mode}_rows_per_min"] = round(rows / wall * 60, 2)
        out[f"{mode}_prefill_tokens_per_row"] = round(sum(g.prefill_tokens for g in gens) / rows, 1)
    for mode in ("prefix_reuse", "batched"):
        out[f"{mode}_speedup"] = round(out[f"{mode}_rows_per_min"] / out["naive_rows_per_min"], 2)
        pairs = zip(answers[mode], answers["naive"], strict=True)
        out[f"{mode}_same_answers"] = sum(a == b for a, b in pairs)
    return out


def main() -> None:
    from pipeline.models.weights import resolve_catalog_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--parallel", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct-q4_k_m")
    args = parser.parse_args()
    model, _ = resolve_catalog_model(args.model, Path("build/cache/models"))
    print(json.dumps(measure(model, args.rows, args.threads, args.parallel), indent=2))


if __name__ == "__main__":
    main()
