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
    from pipeline.generation.llm import ChatRunner, open_gguf
    from pipeline.generation.llm_batch import BatchedChat

    chats = teacher_chats(rows)
    runner = ChatRunner(open_gguf(model, 2048, threads))
    runner.chat_messages(chats[0], 8)  # warm-up (load, first graph)
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


def teacher_chats(rows: int) -> list[list[dict[str, str]]]:
    """The default task's first `rows` train prompts as the teacher's chats (its prompt and
    few-shot prefix): what the teacher stage sends."""
    from pipeline.config import load_config
    from pipeline.tasks import make_task
    from pipeline.tasks.inputs import load_rows

    task = load_config(None).task
    prompts = [r["prompt"] for r in load_rows(Path(str(task.train_data)), "train data",
                                              make_task(task.spec))][:rows]
    return [task.teacher_prompt.messages(p) for p in prompts]


def teacher_args(doc: str, rows: int) -> argparse.ArgumentParser:
    """The options every teacher benchmark takes: --rows, --threads, --model."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rows", type=int, default=rows)
    parser.add_argument("--threads", type=int, default=2, help="cores the model may use")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct-q4_k_m")
    return parser


def teacher_gguf(name: str) -> Path:
    """A catalog model's GGUF, assembled into the build cache the pipeline uses."""
    from pipeline.models.weights import resolve_catalog_model

    return resolve_catalog_model(name, Path("build/cache/models"))[0]


def main() -> None:
    parser = teacher_args(__doc__ or "", 32)
    parser.add_argument("--parallel", type=int, default=32)
    args = parser.parse_args()
    result = measure(teacher_gguf(args.model), args.rows, args.threads, args.parallel)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
