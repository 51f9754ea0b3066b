"""Bench stage: quality and latency of the teacher, the undistilled base and the student.

Rows, all on the same eval prompts, threads and context, each in its own fresh process
with a warm-up generation first:
  teacher (its few-shot prompt) · base as F16 GGUF and through the same quantization
  (the student's short prompt) · the same base given the teacher's few-shot prompt (the small model
  used directly, at its best) · distilled f16 GGUF · distilled quantized GGUF.
Quality is the task metric against the eval references; latency is TTFT, prefill and
decode tokens/s, load time and peak RSS of the child process; size is the file size.

Example:
    distill-edge build --target cpu-int4
    cat build/cache/bench/*/bench.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.config import BuildConfig
from pipeline.stage import StageContext
from pipeline.targets import Target
from pipeline.tasks import load_rows


def _rows_to_bench(ctx: StageContext) -> list[dict[str, Any]]:
    """(label, role, model file, prompt) for every row of the table, in report order."""
    s, quant = ctx.settings, ctx.settings["quant"]
    teacher_p = (s["teacher_system"], s["teacher_template"])
    student_p = (s["student_system"], s["student_template"])
    rows = []
    if s["include_teacher"]:
        rows.append(("teacher", "teacher", ctx.inputs["teacher_model"], teacher_p))
    base = ctx.inputs["base_export"]
    student = ctx.inputs["student_export"]
    rows += [
        ("base F16", "base_fp", base / "model.F16.gguf", student_p),
        (f"base {quant}", "base", base / f"model.{quant}.gguf", student_p),
        (f"base {quant} + few-shot prompt", "base_fewshot", base / f"model.{quant}.gguf", teacher_p),
        ("distilled F16", "distilled_fp", student / "model.F16.gguf", student_p),
        (f"distilled {quant}", "distilled", student / f"model.{quant}.gguf", student_p),
    ]
    return [{"label": label, "role": role, "model": path, "system": p[0], "template": p[1]}
            for label, role, path, p in rows]


class BenchStage:
    name = "bench"
    version = "3"
    libraries = ("llama-cpp-python",)
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        from pipeline.tasks import extraction

        return {
            "task": config.task.name, "task_version": extraction.TASK_VERSION,
            "quant": target.quant, "threads": target.threads,
            "n_ctx": max(target.n_ctx, config.teacher.n_ctx), "warmup": target.bench_warmup,
            "max_tokens": config.bench.max_tokens,
            # the teacher row runs the teacher's GGUF; a remote or HF teacher is not benchmarked
            "include_teacher": config.bench.include_teacher and config.teacher.backend == "llama_cpp",
            "max_eval_rows": config.task.max_eval_rows,
            "synthetic": ({"pp": config.bench.pp_tokens, "tg": config.bench.tg_tokens,
                           "repeats": config.bench.repeats} if config.bench.repeats else None),
            "teacher_system": config.teacher.system_prompt or extraction.TEACHER_SYSTEM_PROMPT,
            "teacher_template": extraction.TEACHER_USER_TEMPLATE,
            "student_system": config.student.system_prompt or extraction.STUDENT_SYSTEM_PROMPT,
            "student_template": extraction.STUDENT_USER_TEMPLATE,
        }

    def runtime(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        return {}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from benchmarks.latency import bench_gguf, summarize_latency
        from pipeline.tasks.extraction import aggregate, parse_answer, score

        s = ctx.settings
        eval_rows = load_rows(ctx.inputs["eval_data"], "eval data", need_reference=True)
        if s["max_eval_rows"]:
            eval_rows = eval_rows[: s["max_eval_rows"]]
        prompts = [r["prompt"] for r in eval_rows]
        table, answers = [], {}
        for row in _rows_to_bench(ctx):
            ctx.log(f"benchmarking {row['label']} on {len(prompts)} prompts")
            raw = bench_gguf(Path(row["model"]), row["system"], row["template"], prompts,
                             threads=s["threads"], n_ctx=s["n_ctx"], max_tokens=s["max_tokens"],
                             warmup=s["warmup"], synthetic=s["synthetic"])
            scores = [score(parse_answer(r["response"])[0], ref["reference"])
                      for r, ref in zip(raw["results"], eval_rows, strict=True)]
            quality = {k: round(v, 4) for k, v in aggregate(scores).items()}
            table.append({"label": row["label"], "role": row["role"],
                          "file": Path(row["model"]).name,
                          "file_mb": round(Path(row["model"]).stat().st_size / 1e6, 1),
                          **quality, **summarize_latency(raw)})
            answers[row["role"]] = [r["response"] for r in raw["results"]]
            ctx.log(f"{row['label']}: field accuracy {quality['field_accuracy']:.3f}, "
                    f"decode {table[-1]['decode_tok_s']} tok/s")
        result = {"eval_rows": len(eval_rows), "threads": s["threads"],
                  "synthetic": s["synthetic"], "rows": table}
        (ctx.out_dir / "bench.json").write_text(json.dumps(result, indent=2))
        with (ctx.out_dir / "answers.jsonl").open("w", encoding="utf-8") as fh:
            for i, ev in enumerate(eval_rows):
                fh.write(json.dumps({"id": ev["id"], "reference": ev["reference"],
                                     **{k: v[i] for k, v in answers.items()}}, ensure_ascii=False) + "\n")
        return {r["role"]: r["field_accuracy"] for r in table}
