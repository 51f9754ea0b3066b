"""The bench's row loop: every row (an artifact + the prompt it is asked with) benchmarked in a
fresh process on the same eval prompts, scored on the task metric, written to bench.json and
answers.jsonl. The bench stages call it; so do scripts (`benchmarks/profiles.py`), with rows
of their own — no stage context needed.

A row is a dict: label, role (its key in answers.jsonl), model (file or folder), prompt (the
`ChatPrompt` it is asked with), and optionally runtime (the adapter in
pipeline.measure.runtimes; by default guessed from the file), score (teacher-forced scoring
of `texts`), reference (this row's log-probs are the ones the other scored rows are held
to) and batched (not a shipped artifact: its untimed answers may come from the runtime's
batched path even where that rounds differently from one-at-a-time answers). Eval rows are
eval_set's: `{"id", "prompt", "reference", "answer"}`.

Example:
    from pipeline.measure.bench import bench_rows, score_texts
    prompt = ChatPrompt(system="Extract.")
    texts = score_texts(Path("student-hf"), prompt, eval_rows, 16)
    bench_rows([{"label": "q4", "role": "q4", "model": Path("m.gguf"), "prompt": prompt,
                 "score": True}], eval_rows, Path("out"), task, threads=2, n_ctx=1024,
               max_tokens=96, texts=texts, reference=Path("ref.npy"))
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.cache import artifact_bytes
from pipeline.prompts import ChatPrompt
from pipeline.tasks.base import Task

REFERENCE_FILE = "reference_logprobs.npy"  # the fp32 student's log-probs (float16)
# A row measured under contention is run again this many times by default (the mark stays
# if it persists); `[bench] remeasure` sets it.
REMEASURE = 1


def score_texts(student_dir: Path, prompt: ChatPrompt, eval_rows: list[dict[str, Any]],
                n: int) -> list[dict[str, Any]]:
    """Token ids of the first `n` eval answers after the student's prompt, made once with the
    student's tokenizer so every artifact is scored on the same ids."""
    from pipeline.models.hf import load_tokenizer
    from pipeline.training.sft_data import encode_example, reply_start

    tok = load_tokenizer(student_dir)
    texts = []
    for row in eval_rows[:n]:
        ids, labels = encode_example(tok, prompt, row["prompt"], row["answer"])
        texts.append({"tokens": ids, "start": reply_start(labels)})
    return texts


BENCH_STEPS = ("bench_teacher", "bench_student", "bench")  # the plan steps that write bench rows


def merged_answers(folders: list[Path]) -> list[dict[str, Any]]:
    """Per eval prompt, every bench row's answer by role: the answers.jsonl of the bench
    steps' folders joined line by line (all are in eval order)."""
    from pipeline.cache import read_jsonl

    tables = [read_jsonl(folder / "answers.jsonl") for folder in folders]
    return [{k: v for row in rows for k, v in row.items()} for rows in zip(*tables, strict=True)]


def _rounded(quality: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in quality.items()}


def score_answers(task: Task, preds: list[Any], eval_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The task metric of one artifact's parsed answers, plus invented spans where the task
    names fields to copy. With several eval sets (rows' "set"), the top level is the primary
    set's (what the verdict and gate read) and "sets" holds every set's figures."""
    from pipeline.measure.quality import invented_spans

    def one(idx: list[int]) -> dict[str, Any]:
        quality = task.evaluate([preds[i] for i in idx], [eval_rows[i]["reference"] for i in idx])
        if task.spec.copy_fields:
            quality["invented"] = invented_spans([preds[i] for i in idx],
                                                 [eval_rows[i]["prompt"] for i in idx],
                                                 task.spec.copy_fields)
        return _rounded(quality)

    sets = list(dict.fromkeys(r.get("set") for r in eval_rows))
    if len(sets) <= 1:
        return one(list(range(len(eval_rows))))
    per = {s: one([i for i, r in enumerate(eval_rows) if r.get("set") == s]) for s in sets}
    primary = task.spec.primary_set if task.spec.primary_set in per else sets[0]
    return {**per[primary], "eval_set": primary,
            "sets": {str(s): {k: v for k, v in q.items() if k != "details"} | {
                "rows": sum(r.get("set") == s for r in eval_rows)} for s, q in per.items()}}


def bench_rows(rows: list[dict[str, Any]], eval_rows: list[dict[str, Any]], out_dir: Path,
               task: Task, *, threads: int, n_ctx: int, max_tokens: int, warmup: int = 1,
               synthetic: dict[str, int] | None = None, latency_prompts: int = 0,
               texts: list[dict[str, Any]] | None = None,
               reference: Path | None = None, keep_reference: bool = False,
               remeasure: int = REMEASURE, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Benchmark each row in its own process; write bench.json and answers.jsonl; return the
    bench.json data.

    Scored rows are held to `reference` (log-probs saved earlier) or, without it, to the row
    marked `reference`, whose log-probs are saved in out_dir (kept with `keep_reference`).
    """
    from pipeline.measure.latency import bench_artifact, summarize_latency

    metric = task.spec.primary
    prompts = [r["prompt"] for r in eval_rows]
    texts = texts or []
    ref_file = reference or out_dir / REFERENCE_FILE
    table, answers = [], {}
    # The reference row first, so every other row can be held to its log-probs.
    for row in sorted(rows, key=lambda r: not r.get("reference")):
        log(f"benchmarking {row['label']} on {len(prompts)} prompts")
        scoring = ({"texts": texts, "reference": None if row.get("reference") else str(ref_file),
                    "save_reference": str(ref_file) if row.get("reference") else None}
                   if row.get("score") and texts else None)
        # a grammar row (pipeline.constrain) differs from its free twin only in decoding:
        # its cost shows in the task prompts' decode speed, not in fixed-length tests
        grammar = row.get("grammar")
        for attempt in range(1 + remeasure):
            raw = bench_artifact(Path(row["model"]), row["prompt"], prompts,
                                 threads=threads, n_ctx=n_ctx, max_tokens=max_tokens, warmup=warmup,
                                 synthetic=None if grammar else synthetic, score=scoring,
                                 runtime=row.get("runtime"), latency_prompts=latency_prompts,
                                 grammar=grammar, batched=bool(row.get("batched")))
            if not raw.get("load", {}).get("contended") or attempt == remeasure:
                break
            log(f"{row['label']}: other processes used {raw['load']['other_cpu_pct']}% of the CPU "
                "while it ran: measuring it again")
        quality = score_answers(task, [task.parse(r["response"])[0] for r in raw["results"]],
                                eval_rows)
        model = Path(row["model"])
        table.append({"label": row["label"], "role": row["role"], "file": model.name,
                      **({"grammar": True} if grammar else {}),
                      "runtime": raw["runtime"], "file_mb": round(artifact_bytes(model) / 1e6, 1),
                      **quality, **summarize_latency(raw)})
        answers[row["role"]] = [r["response"] for r in raw["results"]]
        log(f"{row['label']}: {metric} {quality[metric]:.3f}, "
            f"decode {table[-1]['decode_tok_s']} tok/s")
    if reference is None and not keep_reference:
        ref_file.unlink(missing_ok=True)  # scratch
    order = [r["role"] for r in rows]
    table.sort(key=lambda r: order.index(r["role"]))
    result = {"eval_rows": len(eval_rows), "metric": metric, "threads": threads, "synthetic": synthetic,
              "scored_rows": len(texts), "rows": table}
    (out_dir / "bench.json").write_text(json.dumps(result, indent=2))
    with (out_dir / "answers.jsonl").open("w", encoding="utf-8") as fh:
        for i, ev in enumerate(eval_rows):
            fh.write(json.dumps({"id": ev["id"], "reference": ev["reference"],
                                 **{k: v[i] for k, v in answers.items()}}, ensure_ascii=False) + "\n")
    return result
