"""Bench stage: quality and latency of the teacher, the undistilled base and the student.

Rows, all on the same eval prompts, threads and context, each in its own fresh process
with a warm-up generation first. Two rows depend on no target and are cached steps of their
own, run once for every target: the teacher (`bench_teacher`, its few-shot prompt) and the
distilled fp32 student on torch (`bench_student`, the HF folder training wrote). Per target:
  base as F16 GGUF and through the same quantization (the student's short prompt) · the same
  base given the teacher's few-shot prompt (the small model used directly, at its best) ·
  distilled F16 GGUF · distilled quantized GGUF (ONNX targets: fp32 and quantized ONNX).
Quality is the task metric against the eval references; latency is TTFT, prefill and
decode tokens/s, load time and peak RSS of the child process; size is the file size.
Scores: the first `score_rows` eval answers, teacher-forced after the student's prompt, give
each student-vocabulary row a perplexity, and its mean KL and top-1 agreement vs the fp32
student's log-probs (`bench_student` leaves them in its output).

Example:
    distill-edge build --target cpu-int4
    cat build/cache/bench/*/bench.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.cache import artifact_bytes
from pipeline.config import BuildConfig
from pipeline.stage import StageContext
from pipeline.targets import FORMATS, Target
from pipeline.tasks import load_rows

REFERENCE_FILE = "reference_logprobs.npy"  # the fp32 student's log-probs (float16)


def _student_rows(ctx: StageContext, reference: str | None) -> list[dict[str, Any]]:
    """The target's student rows, in report order; `score` marks the rows scored
    teacher-forced (student prompt and vocabulary), `reference` the one the others are held
    to when no fp32 torch reference exists (`reference` = that role, or None)."""
    s = ctx.settings
    teacher_p = (s["teacher_system"], s["teacher_template"])
    student_p = (s["student_system"], s["student_template"])
    base, student = ctx.inputs["base_export"], ctx.inputs["student_export"]
    fp, quant = s["fp_label"], s["quant_label"]
    rows = [
        (f"base {fp}", "base_fp", base / s["fp_artifact"], student_p),
        (f"base {quant}", "base", base / s["artifact"], student_p),
        (f"base {quant} + few-shot prompt", "base_fewshot", base / s["artifact"], teacher_p),
        (f"distilled {fp}", "distilled_fp", student / s["fp_artifact"], student_p),
        (f"distilled {quant}", "distilled", student / s["artifact"], student_p),
    ]
    return [{"label": label, "role": role, "model": path, "system": p[0], "template": p[1],
             "score": bool(s["score_rows"]) and p is student_p,
             "reference": bool(s["score_rows"]) and role == reference}
            for label, role, path, p in rows]


def score_texts(ctx: StageContext, eval_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Token ids of the first `score_rows` eval answers after the student's prompt, made once
    with the student's tokenizer so every artifact is scored on the same ids."""
    from pipeline.models.hf import load_tokenizer
    from pipeline.sft_data import IGNORE, encode_example
    from pipeline.tasks.extraction import canonical

    s = ctx.settings
    tok = load_tokenizer(Path(ctx.inputs["student"]))
    texts = []
    for row in eval_rows[: s["score_rows"]]:
        ids, labels = encode_example(tok, s["student_system"],
                                     s["student_template"].format(prompt=row["prompt"]),
                                     canonical(row["reference"]))
        texts.append({"tokens": ids, "start": labels.count(IGNORE)})
    return texts


def _common_settings(config: BuildConfig, target: Target) -> dict[str, Any]:
    from pipeline.tasks import extraction

    return {
        "task": config.task.name, "task_version": extraction.TASK_VERSION,
        "threads": target.threads, "n_ctx": max(target.n_ctx, config.teacher.n_ctx),
        "warmup": target.bench_warmup, "max_tokens": config.bench.max_tokens,
        "max_eval_rows": config.task.max_eval_rows,
        "synthetic": ({"pp": config.bench.pp_tokens, "tg": config.bench.tg_tokens,
                       "repeats": config.bench.repeats} if config.bench.repeats else None),
        "teacher_system": config.teacher.system_prompt or extraction.TEACHER_SYSTEM_PROMPT,
        "teacher_template": extraction.TEACHER_USER_TEMPLATE,
    }


def run_rows(ctx: StageContext, rows: list[dict[str, Any]], reference: Path | None = None,
             keep_reference: bool = False) -> dict[str, Any]:
    """Benchmark each row in its own process; write bench.json and answers.jsonl.

    Scored rows are held to `reference` (log-probs an upstream step saved) or, without it, to
    the row marked `reference`, whose log-probs are saved here (kept with `keep_reference`).
    """
    from benchmarks.latency import bench_artifact, summarize_latency
    from pipeline.tasks.extraction import aggregate, parse_answer, score

    s = ctx.settings
    eval_rows = load_rows(ctx.inputs["eval_data"], "eval data", need_reference=True)
    eval_rows = eval_rows[: s["max_eval_rows"] or None]
    prompts = [r["prompt"] for r in eval_rows]
    texts = score_texts(ctx, eval_rows) if any(r.get("score") for r in rows) else []
    ref_file = reference or ctx.out_dir / REFERENCE_FILE
    table, answers = [], {}
    # The reference row first, so every other row can be held to its log-probs.
    for row in sorted(rows, key=lambda r: not r.get("reference")):
        ctx.log(f"benchmarking {row['label']} on {len(prompts)} prompts")
        scoring = ({"texts": texts, "reference": None if row["reference"] else str(ref_file),
                    "save_reference": str(ref_file) if row["reference"] else None}
                   if row.get("score") else None)
        raw = bench_artifact(Path(row["model"]), row["system"], row["template"], prompts,
                             threads=s["threads"], n_ctx=s["n_ctx"], max_tokens=s["max_tokens"],
                             warmup=s["warmup"], synthetic=s["synthetic"], score=scoring)
        scores = [score(parse_answer(r["response"])[0], ref["reference"])
                  for r, ref in zip(raw["results"], eval_rows, strict=True)]
        quality = {k: round(v, 4) for k, v in aggregate(scores).items()}
        model = Path(row["model"])
        table.append({"label": row["label"], "role": row["role"], "file": model.name,
                      "runtime": raw["runtime"], "file_mb": round(artifact_bytes(model) / 1e6, 1),
                      **quality, **summarize_latency(raw)})
        answers[row["role"]] = [r["response"] for r in raw["results"]]
        ctx.log(f"{row['label']}: field accuracy {quality['field_accuracy']:.3f}, "
                f"decode {table[-1]['decode_tok_s']} tok/s")
    if reference is None and not keep_reference:
        ref_file.unlink(missing_ok=True)  # scratch
    order = [r["role"] for r in rows]
    table.sort(key=lambda r: order.index(r["role"]))
    result = {"eval_rows": len(eval_rows), "threads": s["threads"], "synthetic": s["synthetic"],
              "scored_rows": len(texts), "rows": table}
    (ctx.out_dir / "bench.json").write_text(json.dumps(result, indent=2))
    with (ctx.out_dir / "answers.jsonl").open("w", encoding="utf-8") as fh:
        for i, ev in enumerate(eval_rows):
            fh.write(json.dumps({"id": ev["id"], "reference": ev["reference"],
                                 **{k: v[i] for k, v in answers.items()}}, ensure_ascii=False) + "\n")
    return {r["role"]: r["field_accuracy"] for r in table}


class BenchTeacherStage:
    """The teacher's row alone: it depends on neither the student nor the quantization, so
    one run serves every target and every retrained student."""

    name = "bench_teacher"
    version = "1"
    libraries = ("llama-cpp-python",)
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        # the row runs the teacher's GGUF; a remote or HF teacher is not benchmarked
        return {**_common_settings(config, target),
                "include_teacher": config.bench.include_teacher and config.teacher.backend == "llama_cpp"}

    def runtime(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        return {}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        s = ctx.settings
        rows = [{"label": "teacher", "role": "teacher", "model": ctx.inputs["teacher_model"],
                 "system": s["teacher_system"], "template": s["teacher_template"]}]
        return run_rows(ctx, rows if s["include_teacher"] else [])


def _student_settings(config: BuildConfig, target: Target) -> dict[str, Any]:
    from pipeline.tasks import extraction

    return {**_common_settings(config, target), "score_rows": config.bench.score_rows,
            "student_system": config.student.system_prompt or extraction.STUDENT_SYSTEM_PROMPT,
            "student_template": extraction.STUDENT_USER_TEMPLATE}


class BenchStudentStage:
    """The fp32 student on torch (the HF folder training wrote): the reference every export
    is held to. Like the teacher's row it depends on no target, so one run serves them all;
    its log-probs stay in its output (float16) for the targets' bench steps."""

    name = "bench_student"
    version = "1"
    libraries = ("torch", "transformers")
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        return {**_student_settings(config, target), "torch_row": config.bench.torch_row}

    def runtime(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        return {}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        s = ctx.settings
        row = {"label": "distilled fp32 (torch)", "role": "distilled_torch",
               "model": ctx.inputs["student"], "system": s["student_system"],
               "template": s["student_template"], "score": bool(s["score_rows"]),
               "reference": bool(s["score_rows"])}
        return run_rows(ctx, [row] if s["torch_row"] else [], keep_reference=True)


class BenchStage:
    name = "bench"
    version = "7"
    libraries = ("llama-cpp-python", "torch", "transformers", "onnxruntime-genai")
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        onnx = " ONNX" if target.format == "onnx" else ""
        return {**_student_settings(config, target), "artifact": target.artifact(),
                "fp_artifact": target.artifact(fp=True), "quant_label": target.quant + onnx,
                "fp_label": FORMATS[target.format]["fp"] + onnx}

    def runtime(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        return {}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        # Held to the fp32 torch student when bench_student measured it, else to the F16/fp32 export.
        ref = ctx.inputs["student_bench"] / REFERENCE_FILE
        if ref.is_file():
            return run_rows(ctx, _student_rows(ctx, None), reference=ref)
        return run_rows(ctx, _student_rows(ctx, "distilled_fp"))
