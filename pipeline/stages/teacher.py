"""Teacher stage: run the teacher GGUF over the train prompts and record its answers.

setup: load the GGUF (llama.cpp) and any rows a killed earlier run already wrote.
run:   one greedy chat completion per prompt, the few-shot system prompt first and
       identical on every row so llama.cpp reuses its KV cache; each row is appended and
       flushed to rows.jsonl the moment it is done (kill -9 loses no finished row).
cleanup: write stats.json (tokens, wall time, rows/min).

Example:
    distill-edge build --target cpu-int4        # runs this stage first
    head -2 build/cache/teacher/*/rows.jsonl
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pipeline.config import BuildConfig
from pipeline.stage import StageContext
from pipeline.targets import Target
from pipeline.tasks import load_rows

ROWS_FILE = "rows.jsonl"


def _done_rows(path: Path) -> dict[str, dict[str, Any]]:
    """Rows a previous (killed) run finished; a torn last line is dropped and redone."""
    done: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return done
    good_bytes = 0
    with path.open("rb") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            if not line.endswith(b"\n"):
                break
            done[row["id"]] = row
            good_bytes += len(line)
    os.truncate(path, good_bytes)  # cut a half-written tail so appends stay valid JSONL
    return done


class TeacherStage:
    name = "teacher"
    version = "1"
    libraries = ("llama-cpp-python",)
    resumable = True

    def settings(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        from pipeline.tasks import extraction

        t = config.teacher
        return {
            "system_prompt": t.system_prompt or extraction.TEACHER_SYSTEM_PROMPT,
            "user_template": extraction.TEACHER_USER_TEMPLATE,
            "max_tokens": t.max_tokens, "temperature": t.temperature, "n_ctx": t.n_ctx,
            "threads": t.threads, "seed": t.seed, "max_rows": config.task.max_train_rows,
        }

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from tqdm import tqdm

        from pipeline.llm import ChatRunner, open_gguf

        s = ctx.settings
        prompts = load_rows(ctx.inputs["train_data"], "train data")
        if s["max_rows"]:
            prompts = prompts[: s["max_rows"]]
        out_path = ctx.out_dir / ROWS_FILE
        done = _done_rows(out_path)
        if done:
            ctx.log(f"resuming: {len(done)} of {len(prompts)} rows already done")
        runner = ChatRunner(open_gguf(ctx.inputs["teacher_model"], s["n_ctx"], s["threads"],
                                      s["seed"]))
        todo = [p for p in prompts if p["id"] not in done]
        start = time.perf_counter()
        totals = {"prompt_tokens": 0, "prefill_tokens": 0, "completion_tokens": 0}
        with out_path.open("a", encoding="utf-8") as out, tqdm(
                total=len(prompts), initial=len(prompts) - len(todo), unit="row",
                desc="teacher", dynamic_ncols=True) as bar:
            for row in todo:
                gen = runner.chat(s["system_prompt"], s["user_template"].format(prompt=row["prompt"]),
                                  s["max_tokens"])
                record = {"id": row["id"], "prompt": row["prompt"], "response": gen.text,
                          "reference": row["reference"], "prompt_tokens": gen.prompt_tokens,
                          "prefill_tokens": gen.prefill_tokens,
                          "completion_tokens": gen.completion_tokens}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                out.flush()
                os.fsync(out.fileno())  # a finished row survives kill -9 and power loss
                for key in totals:
                    totals[key] += getattr(gen, key)
                bar.update(1)
                bar.set_postfix(tok_s=f"{totals['completion_tokens'] / (time.perf_counter() - start):.1f}")
        wall = time.perf_counter() - start
        stats = {"rows": len(prompts), "rows_this_run": len(todo), "wall_s": round(wall, 2),
                 "rows_per_min": round(len(todo) / wall * 60, 2) if wall > 0 else None, **totals,
                 "decode_tok_s": round(totals["completion_tokens"] / wall, 2) if wall > 0 else None}
        (ctx.out_dir / "stats.json").write_text(json.dumps(stats, indent=2))
        return stats
