"""Teacher throughput, side by side: our prefix-reusing loop vs a naive one-prompt-at-a-time loop.

Both run the same GGUF, threads and prompts (the default task's train split, teacher
prompt and few-shot prefix) in one process. The naive loop clears the KV cache before each
prompt, so it prefills the whole few-shot prefix every time; ours keeps the shared prefix.

Example:
    .venv/bin/python -m benchmarks.teacher_throughput --rows 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def measure(model: Path, rows: int, threads: int) -> dict[str, float]:
    """rows/min and prefill tokens per row, naive vs prefix reuse, on the first `rows` prompts."""
    from pipeline.llm import ChatRunner, open_gguf
    from pipeline.tasks import extraction, load_rows, shipped_split

    prompts = [r["prompt"] for r in load_rows(shipped_split("extraction", "train"), "train")][:rows]
    runner = ChatRunner(open_gguf(model, 2048, threads))
    system, template = extraction.TEACHER_SYSTEM_PROMPT, extraction.TEACHER_USER_TEMPLATE
    runner.chat(system, template.format(prompt=prompts[0]), 8)  # warm-up (load, first graph)
    out: dict[str, float] = {"rows": rows, "threads": threads}
    for mode in ("naive", "prefix_reuse"):
        prefill = 0
        start = time.perf_counter()
        for prompt in prompts:
            if mode == "naive":
                runner.llm.reset()  # forget the cache: every prompt is prefilled in full
            gen = runner.chat(system, template.format(prompt=prompt), 96)
            prefill += gen.prefill_tokens
        wall = time.perf_counter() - start
        out[f"{mode}_rows_per_min"] = round(rows / wall * 60, 2)
        out[f"{mode}_prefill_tokens_per_row"] = round(prefill / rows, 1)
    out["speedup"] = round(out["prefix_reuse_rows_per_min"] / out["naive_rows_per_min"], 2)
    return out


def main() -> None:
    from pipeline.models.weights import resolve_catalog_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct-q4_k_m")
    args = parser.parse_args()
    model, _ = resolve_catalog_model(args.model, Path("build/cache/models"))
    print(json.dumps(measure(model, args.rows, args.threads), indent=2))


if __name__ == "__main__":
    main()
