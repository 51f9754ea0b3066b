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

from pydantic import BaseModel

from pipeline.config import BuildConfig
from pipeline.errors import UserError
from pipeline.filters import FilterRow, FilterSettings, apply_filters, load_schema
from pipeline.outputs import (
    DROPS,
    KEPT,
    TEACHER_FAILED,
    TEACHER_STATS,
    Drops,
    TeacherStats,
    read_doc,
    read_teacher_rows,
    write_doc,
)
from pipeline.stage import Runtime, StageContext
from pipeline.targets import Target
from pipeline.tasks import make_task


class DroppedExample(BaseModel):
    id: str
    prompt: str  # the first 300 characters
    response: str  # the teacher's answer or error, first 300 characters


class DataCard(Drops):
    """data_card.json: the drop counts, the teacher's cost, and a few rows per drop reason."""

    teacher: TeacherStats
    dropped_examples: dict[str, list[DroppedExample]]


def data_card(drops: Drops, dropped: list[FilterRow], teacher: TeacherStats) -> tuple[DataCard, str]:
    """The data card as JSON and Markdown: what was kept, what was dropped and why, at what cost."""
    examples: dict[str, list[DroppedExample]] = {}
    for row in dropped:
        bucket = examples.setdefault(row["drop_reason"], [])
        if len(bucket) < 3:
            bucket.append(DroppedExample(id=row["id"], prompt=row["prompt"][:300], response=(
                row.get("response") or row.get("error") or "")[:300]))
    card = DataCard(**drops.model_dump(), teacher=teacher, dropped_examples=examples)
    t = teacher
    lines = ["# Data card", "", f"Teacher answers: {drops.rows_in}; kept {drops.kept}; "
             f"dropped {drops.dropped}.", "", "| drop reason | rows |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in drops.drops_by_reason.items()]
    lines += ["", f"Teacher: {t.rows_per_min} rows/min, {t.wall_s} s; "
              f"prompt tokens {t.prompt_tokens} (prefilled {t.prefill_tokens}, "
              f"the rest from the KV cache), generated {t.completion_tokens} at "
              f"{t.decode_tok_s} tok/s; failed requests {t.failed}."]
    for reason, rows in examples.items():
        lines += ["", f"## Dropped: {reason}"]
        lines += [f"- `{r.id}`: {json.dumps(r.response, ensure_ascii=False)}" for r in rows]
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

    def runtime(self, config: BuildConfig, target: Target) -> Runtime:
        return Runtime()

    def run(self, ctx: StageContext[FilterSettings]) -> Drops:
        teacher_dir = ctx.inputs["teacher"]
        # train rows only: the teacher's answers to unlabelled eval prompts label the eval
        # split (eval_set) and are never trained on
        rows = [r for r in read_teacher_rows(teacher_dir) + read_teacher_rows(
            teacher_dir, TEACHER_FAILED) if r["split"] == "train"]
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
        summary = Drops(rows_in=len(rows), kept=len(kept), dropped=len(dropped),
                        drops_by_reason=dict(sorted(reasons.items())), kept_teacher_metric=metric,
                        kept_teacher_quality=round(quality[metric], 4) if metric in quality else None)
        (ctx.out_dir / DROPS).write_text(summary.model_dump_json(indent=2))  # None kept
        teacher = read_doc(teacher_dir / TEACHER_STATS, TeacherStats)
        card, markdown = data_card(summary, dropped, teacher)
        write_doc(ctx.out_dir / "data_card.json", card)
        (ctx.out_dir / "data_card.md").write_text(markdown)
        ctx.log(f"kept {len(kept)}/{len(rows)}; dropped {dict(reasons)}")
        if not kept:
            raise UserError(f"filter kept no teacher rows (drops: {dict(reasons)}): check the "
                            "teacher model and its system prompt")
        return summary
