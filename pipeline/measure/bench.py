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
from typing import Any, Required, TypedDict

from pipeline.cache import artifact_bytes
from pipeline.outputs import ANSWERS, BENCH
from pipeline.prompts import ChatPrompt
from pipeline.tasks.base import Task
from pipeline.tasks.inputs import EvalRow

REFERENCE_FILE = "reference_logprobs.npy"  # the fp32 student's log-probs (float16)
# A row measured under contention is run again this many times by default (the mark stays
# if it persists); `[bench] remeasure` sets it.
REMEASURE = 1


class RowSpec(TypedDict, total=False):
    """One row to benchmark (the module docstring says what each field does)."""

    label: Required[str]
    role: Required[str]  # its key in answers.jsonl (a `Role` in a build)
    model: Required[Path]
    prompt: Required[ChatPrompt]
    runtime: str | None  # the adapter; None: guessed from the file
    score: bool
    reference: bool
    batched: bool
    stop_below: float  # the bar a base row stops below
    grammar: str  # the task grammar it decodes under


def score_texts(student_dir: Path, prompt: ChatPrompt, eval_rows: list[EvalRow],
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


# the plan steps that write bench rows
BENCH_STEPS = ("bench_teacher", "bench_student", "bench_labels", "bench")


def merged_answers(folders: list[Path]) -> list[dict[str, Any]]:
    """Per eval prompt, every bench row's answer by role: the answers.jsonl of the bench
    steps' folders joined line by line (all are in eval order)."""
    from pipeline.cache import read_jsonl

    tables = [read_jsonl(folder / ANSWERS) for folder in folders]
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


def bench_rows(rows: list[RowSpec], eval_rows: list[EvalRow], out_dir: Path,
               task: Task, *, threads: int, n_ctx: int, max_tokens: int, warmup: int = 1,
               synthetic: dict[str, int] | None = None, latency_prompts: int = 0,
               texts: list[dict[str, Any]] | None = None,
               reference: Path | None = None, keep_reference: bool = False,
               remeasure: int = REMEASURE, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Benchmark each row in its own process; write bench.json and answers.jsonl; return the
    bench.json data.

    Scored rows are held to `reference` (log-probs saved earlier) or, without it, to the row
    marked `reference`, whose log-probs are saved in out_dir (kept with `keep_reference`).
    A row with `stop_below` (a bar) stops once its metric's sequential upper bound is below
    it (pipeline.measure.sequential); its answers.jsonl entries are only the prompts answered.
    """
    from pipeline.measure.latency import summarize_latency

    metric = task.spec.primary
    texts = texts or []
    ref_file = reference or out_dir / REFERENCE_FILE
    table, answers = [], {}
    common = {"threads": threads, "n_ctx": n_ctx, "max_tokens": max_tokens, "warmup": warmup,
              "synthetic": synthetic, "latency_prompts": latency_prompts}
    # The reference row first, so every other row can be held to its log-probs.
    for row in sorted(rows, key=lambda r: not r.get("reference")):
        log(f"benchmarking {row['label']} on {len(eval_rows)} prompts")
        scoring = ({"texts": texts, "reference": None if row.get("reference") else str(ref_file),
                    "save_reference": str(ref_file) if row.get("reference") else None}
                   if row.get("score") and texts else None)
        raw, done, stopped = _answered(row, eval_rows, task, common, scoring, log)
        raw = _retimed(row, raw, eval_rows, common, remeasure, log)
        quality = score_answers(task, [task.parse(raw["results"][k]["response"])[0]
                                       for k in range(len(done))], [eval_rows[i] for i in done])
        if stopped:  # answered the primary set only: name it as the full rows do
            quality |= {"stopped": stopped, **({"eval_set": task.spec.primary_set}
                                               if task.spec.primary_set else {})}
        model = Path(row["model"])
        table.append({"label": row["label"], "role": row["role"], "file": model.name,
                      **({"grammar": True} if row.get("grammar") else {}),
                      "runtime": raw["runtime"], "file_mb": round(artifact_bytes(model) / 1e6, 1),
                      **quality, **summarize_latency(raw)})
        answers[row["role"]] = {i: raw["results"][k]["response"] for k, i in enumerate(done)}
        log(f"{row['label']}: {metric} {quality[metric]:.3f}, "
            f"decode {table[-1]['decode_tok_s']} tok/s" + (f"; {stopped['text']}" if stopped else ""))
    if reference is None and not keep_reference:
        ref_file.unlink(missing_ok=True)  # scratch
    order = [r["role"] for r in rows]
    table.sort(key=lambda r: order.index(r["role"]))
    result = {"eval_rows": len(eval_rows), "metric": metric, "threads": threads, "synthetic": synthetic,
              "scored_rows": len(texts), "rows": table}
    (out_dir / BENCH).write_text(json.dumps(result, indent=2))
    with (out_dir / ANSWERS).open("w", encoding="utf-8") as fh:
        for i, ev in enumerate(eval_rows):
            fh.write(json.dumps({"id": ev["id"], "reference": ev["reference"],
                                 **{k: v[i] for k, v in answers.items() if i in v}},
                                ensure_ascii=False) + "\n")
    return result


def _run(row: RowSpec, prompts: list[str], common: dict[str, Any], *, first: bool,
         scoring: dict[str, Any] | None = None, timed_only: bool = False) -> dict[str, Any]:
    """One child process answering `prompts` for the row. The first run of a row warms up,
    times its first latency_prompts and runs the fixed-length tests; a later one (the next
    block of a stoppable row) only answers, untimed."""
    from pipeline.measure.latency import bench_artifact

    grammar = row.get("grammar")
    # a grammar row differs from its free twin only in decoding: its cost shows in the task
    # prompts' decode speed, not in fixed-length tests
    return bench_artifact(Path(row["model"]), row["prompt"], prompts, threads=common["threads"],
                          n_ctx=common["n_ctx"], max_tokens=common["max_tokens"],
                          warmup=common["warmup"] if first else 0,
                          synthetic=common["synthetic"] if first and not grammar else None,
                          score=scoring, runtime=row.get("runtime"),
                          latency_prompts=common["latency_prompts"] if first else 0,
                          untimed=not first, grammar=grammar,
                          batched=bool(row.get("batched")) and not timed_only)


def _answered(row: RowSpec, eval_rows: list[EvalRow], task: Task,
              common: dict[str, Any], scoring: dict[str, Any] | None, log: Callable[[str], None]
              ) -> tuple[dict[str, Any], list[int], dict[str, Any] | None]:
    """The row's raw results for the eval prompts it answered (their indices, in eval order)
    and, if it stopped early, why. Rows without `stop_below` answer every prompt at once."""
    from pipeline.measure.sequential import looks, order, upper_bound

    prompts = [r["prompt"] for r in eval_rows]
    bar, metric = row.get("stop_below"), task.spec.primary
    primary = [i for i, r in enumerate(eval_rows)
               if task.spec.primary_set is None or r.get("set") == task.spec.primary_set]
    marks = looks(len(primary))
    timed = list(range(min(common["latency_prompts"], len(eval_rows))))
    if bar is None or not marks or not timed or metric not in getattr(task, "mean_metrics", ()):
        return _run(row, prompts, common, first=True, scoring=scoring), list(range(len(prompts))), None
    seq = order(primary)
    done: dict[int, dict[str, Any]] = {}

    def answer(idx: list[int], first: bool) -> dict[str, Any]:
        todo = list(dict.fromkeys(i for i in idx if i not in done))
        raw = _run(row, [prompts[i] for i in todo], common, first=first,
                   scoring=scoring if first else None)
        done.update(zip(todo, raw["results"], strict=True))
        return raw

    raw = answer(timed + seq[: marks[0]], first=True)
    stopped = None
    for n in marks:
        answer(seq[:n], first=False)
        scores = [task.score(task.parse(done[i]["response"])[0], eval_rows[i]["reference"])[metric]
                  for i in seq[:n]]
        ub = upper_bound(scores, len(marks))
        if ub < bar:
            stopped = {"after": n, "upper_bound": round(ub, 4), "bar": bar, "looks": len(marks),
                       "text": f"stopped after {n} prompts: upper bound {ub:.3f} < bar {bar:.3f}"}
            log(f"{row['label']}: {stopped['text']}")
            break
    if stopped is None:
        answer(list(range(len(prompts))), first=False)
    idx = sorted(done)
    return {**raw, "results": [done[i] for i in idx]}, idx, stopped


def _retimed(row: RowSpec, raw: dict[str, Any], eval_rows: list[EvalRow],
             common: dict[str, Any], remeasure: int, log: Callable[[str], None]) -> dict[str, Any]:
    """A row timed while other processes used the CPU has its timed prompts and fixed-length
    tests timed again (up to `remeasure` times; the mark stays if the load persists). Its
    answers and scores are kept: greedy answers do not depend on load."""
    timed = [k for k, r in enumerate(raw["results"]) if r.get("timed", True)]
    for _ in range(remeasure):
        if not raw.get("load", {}).get("contended"):
            break
        log(f"{row['label']}: other processes used {raw['load']['other_cpu_pct']}% of the CPU "
            "while it ran: timing it again")
        again = _run(row, [eval_rows[k]["prompt"] for k in timed], common, first=True,
                     timed_only=True)
        results = list(raw["results"])
        for k, new in zip(timed, again["results"], strict=True):
            results[k] = {**new, "response": results[k]["response"]}
        raw = {**raw, "results": results, "load_s": again["load_s"], "load": again["load"],
               "synthetic": again.get("synthetic")}
    return raw
