"""Eval-set stage: the eval prompts with the reference every artifact is scored against.

setup: the prompts step's eval.jsonl and, for eval prompts without a reference, the
       teacher's answers to them (the teacher stage answers those in the same batch as
       the train prompts; they never reach training).
run:   a row with a reference keeps it; a row without one takes the teacher's answer,
       parsed and validated by the task (the majority answer when the teacher sampled
       several), and is dropped when the teacher's answer is not valid.
cleanup: eval.jsonl (`{"id", "prompt", "reference", "answer"}`: `answer` is the reference's
       canonical text, the one training and scoring use) and where the references came
       from — "data", "teacher" or "mixed". Against teacher labels every quality figure
       is agreement with the teacher, not accuracy: the report says so.

Example:
    distill-edge build --target cpu-int4 --until eval_set
    head -2 build/cache/eval_set/*/eval.jsonl
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pipeline.config import BuildConfig
from pipeline.errors import UserError
from pipeline.outputs import EvalSetSummary, TeacherRow, read_teacher_rows
from pipeline.stage import Runtime, Settings, StageContext
from pipeline.targets import Target
from pipeline.tasks import make_task
from pipeline.tasks.base import Task, TaskSpec
from pipeline.tasks.inputs import EVAL_FILE, EvalRow, read_rows, write_rows


class EvalSetSettings(Settings):
    task: TaskSpec


def teacher_answers(rows: list[TeacherRow], task: Task) -> dict[str, Any]:
    """Per eval id, the teacher's valid answer (the most common one over its samples), as the
    task parses it (a label, an object, a text)."""
    votes: dict[str, Counter[str]] = {}
    parsed: dict[str, Any] = {}  # canonical text -> the parsed answer
    for row in rows:
        if row["split"] != "eval" or "error" in row:
            continue
        answer, _ = task.parse(row["response"])
        if answer is not None:
            text = task.canonical(answer)
            votes.setdefault(row["id"], Counter())[text] += 1
            parsed[text] = answer
    return {rid: parsed[c.most_common(1)[0][0]] for rid, c in votes.items()}


class EvalSetStage:
    name = "eval_set"
    libraries = ("jsonschema",)
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> EvalSetSettings:
        return EvalSetSettings(task=config.task.spec)

    def runtime(self, config: BuildConfig, target: Target) -> Runtime:
        return Runtime()

    def run(self, ctx: StageContext[EvalSetSettings]) -> EvalSetSummary:
        task = make_task(ctx.settings.task)
        rows = read_rows(ctx.inputs["prompts"] / EVAL_FILE)
        unlabelled = [r for r in rows if r["reference"] is None]
        by_teacher = (teacher_answers(read_teacher_rows(ctx.inputs["teacher"]), task)
                      if unlabelled else {})
        out, dropped = list[EvalRow](), 0
        for row in rows:
            ref, source = row["reference"], "data"
            if ref is None:
                ref, source = by_teacher.get(row["id"]), "teacher"
                if ref is None:
                    dropped += 1  # the teacher gave no valid answer: nothing to score against
                    continue
            scored = EvalRow(id=row["id"], prompt=row["prompt"], reference=ref,
                             answer=task.canonical(ref), reference_source=source)
            if "set" in row:
                scored["set"] = row["set"]
            out.append(scored)
        if not out:
            raise UserError("no eval prompt has a reference: the teacher answered none of the "
                            "unlabelled eval prompts validly (see the teacher's rows)")
        write_rows(ctx.out_dir / EVAL_FILE, out)
        sources = {r["reference_source"] for r in out}
        summary = EvalSetSummary(
            rows=len(out), references=sources.pop() if len(sources) == 1 else "mixed",
            from_teacher=sum(r["reference_source"] == "teacher" for r in out),
            dropped_no_valid_teacher_answer=dropped)
        if unlabelled:
            ctx.log(f"{summary.from_teacher} eval references are the teacher's answers "
                    f"({dropped} dropped: no valid answer)")
        return summary
