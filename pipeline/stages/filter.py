"""Filter stage: keep only teacher answers that pass the configured filters; write a data card.

setup: read the teacher's rows (and the requests that failed for good).
run:   `pipeline.filters.apply_filters` — length, refusal, validator, reference check,
       dedupe, self-consistency; each drop counted by reason. Kept answers are rewritten to
       the validator's canonical form (compact one-line JSON for the default task).
cleanup: kept.jsonl, dropped.jsonl, drops.json and data_card.md/.json (counts per filter,
       examples of dropped rows, teacher tokens, wall time, rows/min, prefill vs decode).

Example:
    distill-edge build --target cpu-int4 --until filter
    cat build/cache/filter/*/data_card.md
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.config import BuildConfig
from pipeline.errors import UserError
from pipeline.filters import FilterSettings, apply_filters, load_schema
from pipeline.outputs import (
    DROPS,
    KEPT,
    TEACHER_FAILED,
    TEACHER_ROWS,
    TEACHER_STATS,
    TeacherStats,
    read_json,
)
from pipeline.stage import StageContext
from pipeline.targets import Target
from pipeline.tasks import make_task


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def data_card(summary: dict[str, Any], dropped: list[dict[str, Any]],
              teacher: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The data card as JSON and Markdown: what was kept, what was dropped and why, at what cost."""
    examples: dict[str, list[dict[str, Any]]] = {}
    for row in dropped:
        bucket = examples.setdefault(row["drop_reason"], [])
        if len(bucket) < 3:
            bucket.append({"id": row["id"], "prompt": row["prompt"][:300],
                           "response": (row.get("response") or row.get("error") or "")[:300]})
    card = {**summary, "teacher": teacher, "dropped_examples": examples}
    lines = ["# Data card", "", f"Teacher answers: {summary['rows_in']}; kept {summary['kept']}; "
             f"dropped {summary['dropped']}.", "", "| drop reason | rows |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary["drops_by_reason"].items()]
    lines += ["", f"Teacher: {teacher.get('rows_per_min')} rows/min, {teacher.get('wall_s')} s; "
              f"prompt tokens {teacher.get('prompt_tokens')} (prefilled {teacher.get('prefill_tokens')}, "
              f"the rest from the KV cache), generated {teacher.get('completion_tokens')} at "
              f"{teacher.get('decode_tok_s')} tok/s; failed requests {teacher.get('failed', 0)}."]
    for reason, rows in examples.items():
        lines += ["", f"## Dropped: {reason}"]
        lines += [f"- `{r['id']}`: {json.dumps(r['response'], ensure_ascii=False)}" for r in rows]
    return card, "\n".join(lines) + "\n"


class FilterStage:
    name = "filter"
    libraries: tuple[str, ...] = ("jsonschema", "scikit-learn", "sacrebleu")
    resumable = False
    # they quote the teacher's wall time and speed; kept.jsonl is what training reads
    measurements = ("data_card.json", "data_card.md")

    def settings(self, config: BuildConfig, target: Target) -> FilterSettings:
        f = config.filter
        return FilterSettings(
            task=config.task.spec, checks=list(f.checks),
            min_response_chars=f.min_response_chars, max_response_chars=f.max_response_chars,
            validator=f.validator, pattern=f.pattern, labels=list(f.labels),
            json_schema=load_schema(f.json_schema_file), dedupe=f.dedupe,
            n_samples=config.teacher.n_samples)

    def runtime(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        return {}

    def run(self, ctx: StageContext[FilterSettings]) -> dict[str, Any]:
        teacher_dir = ctx.inputs["teacher"]
        # train rows only: the teacher's answers to unlabelled eval prompts label the eval
        # split (eval_set) and are never trained on
        rows = [r for r in _read_jsonl(teacher_dir / TEACHER_ROWS) + _read_jsonl(
            teacher_dir / TEACHER_FAILED) if r.get("split", "train") == "train"]
        kept, dropped = apply_filters(rows, ctx.settings)
        with (ctx.out_dir / KEPT).open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"id": r["id"], "prompt": r["prompt"], "response": r["answer"]},
                                     ensure_ascii=False) + "\n" for r in kept)
        # diagnostics only: the kept answers' quality where the train data has references
        metric = ctx.settings.task.primary
        pairs = [(r["parsed"], r["reference"]) for r in kept
                 if r.get("reference") is not None and "parsed" in r]
        quality = (make_task(ctx.settings.task).evaluate([p for p, _ in pairs], [q for _, q in pairs])
                   if pairs else {})
        with (ctx.out_dir / "dropped.jsonl").open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps({k: v for k, v in r.items() if k != "parsed"},
                                     ensure_ascii=False) + "\n" for r in dropped)
        reasons = Counter(r["drop_reason"] for r in dropped)
        summary = {"rows_in": len(rows), "kept": len(kept), "dropped": len(dropped),
                   "drops_by_reason": dict(sorted(reasons.items())),
                   "kept_teacher_metric": metric,
                   "kept_teacher_quality": round(quality[metric], 4) if metric in quality else None}
        (ctx.out_dir / DROPS).write_text(json.dumps(summary, indent=2))
        teacher = read_json(teacher_dir, TEACHER_STATS, TeacherStats)
        card, markdown = data_card(summary, dropped, teacher)
        (ctx.out_dir / "data_card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False))
        (ctx.out_dir / "data_card.md").write_text(markdown)
        ctx.log(f"kept {len(kept)}/{len(rows)}; dropped {dict(reasons)}")
        if not kept:
            raise UserError(f"filter kept no teacher rows (drops: {dict(reasons)}): check the "
                            "teacher model and its system prompt")
        return summary
