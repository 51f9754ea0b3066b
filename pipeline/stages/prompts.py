"""Prompts stage: the user's data files -> the build's train and eval prompts, validated.

setup: read the train (and eval) data in any supported format with the task's column
       mapping (`pipeline.tasks.inputs`); every reference is checked by the task.
run:   without eval data, hold out `task.holdout` train prompts as the eval split (chosen
       by a hash of their ids: stable when rows are added); drop from training every prompt
       that also occurs in the eval split after normalisation (counted and warned), so no
       artifact is scored on text it was trained on; cap both splits.
cleanup: train.jsonl and eval.jsonl (`{"id", "prompt", "reference"}`, reference null where
       the data has none: the teacher labels those) and the counts.

Example:
    distill-edge build --target cpu-int4 --until prompts
    head -2 build/cache/prompts/*/eval.jsonl
"""

from __future__ import annotations

import hashlib

from pipeline.config import BuildConfig
from pipeline.outputs import PromptsSummary
from pipeline.stage import Runtime, Settings, StageContext
from pipeline.targets import Target
from pipeline.tasks import make_task
from pipeline.tasks.base import TaskSpec
from pipeline.tasks.inputs import (
    EVAL_FILE,
    TRAIN_FILE,
    Columns,
    PromptRow,
    load_rows,
    normalized_prompt,
    write_rows,
)


class PromptsSettings(Settings):
    task: TaskSpec
    columns: Columns
    has_eval: bool  # False: hold out `holdout` train prompts
    holdout: int
    max_train_rows: int
    max_eval_rows: int


def split_holdout(rows: list[PromptRow], n: int) -> tuple[list[PromptRow], list[PromptRow]]:
    """(train, eval): the n rows whose id hashes lowest are held out; order is kept."""
    if n >= len(rows):
        raise ValueError(f"task.holdout = {n} leaves no train prompts of {len(rows)}")
    held = set(sorted((hashlib.sha256(r["id"].encode()).hexdigest(), r["id"]) for r in rows)[:n])
    ids = {i for _, i in held}
    return [r for r in rows if r["id"] not in ids], [r for r in rows if r["id"] in ids]


class PromptsStage:
    name = "prompts"
    libraries = ("pyarrow", "datasets", "jsonschema")
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> PromptsSettings:
        t = config.task
        return PromptsSettings(task=t.spec, columns=t.columns, has_eval=t.eval_data is not None,
                               holdout=t.holdout, max_train_rows=t.max_train_rows,
                               max_eval_rows=t.max_eval_rows)

    def runtime(self, config: BuildConfig, target: Target) -> Runtime:
        return Runtime()

    def run(self, ctx: StageContext[PromptsSettings]) -> PromptsSummary:
        from pipeline.errors import UserError

        s = ctx.settings
        task = make_task(s.task)
        train = load_rows(ctx.inputs["train_data"], "train data", task, s.columns)
        if s.has_eval:
            evals = load_rows(ctx.inputs["eval_data"], "eval data", task, s.columns)
        else:
            try:
                train, evals = split_holdout(train, s.holdout)
            except ValueError as exc:
                raise UserError(str(exc)) from None
            ctx.log(f"no eval data: {len(evals)} train prompts held out as the eval split")
        evals = evals[: s.max_eval_rows or None]
        sets = list(dict.fromkeys(r.get("set") for r in evals))
        if s.task.primary_set is not None and s.task.primary_set not in sets:
            raise UserError(f"task.primary_set '{s.task.primary_set}' is not an eval set in the eval "
                            f"data (sets: {', '.join(str(x) for x in sets)})")
        seen = {normalized_prompt(r["prompt"]) for r in evals}
        overlap = [r for r in train if normalized_prompt(r["prompt"]) in seen]
        if overlap:
            ctx.log(f"warning: {len(overlap)} train prompts also occur in the eval split "
                    f"(e.g. id {overlap[0]['id']}): dropped from training")
            train = [r for r in train if normalized_prompt(r["prompt"]) not in seen]
        train = train[: s.max_train_rows or None]
        if not train:
            raise UserError("no train prompts left after removing the eval overlap")
        write_rows(ctx.out_dir / TRAIN_FILE, train)
        write_rows(ctx.out_dir / EVAL_FILE, evals)
        labelled = sum(r["reference"] is not None for r in evals)
        by_set = {str(x): sum(r.get("set") == x for r in evals) for x in sets if x is not None}
        return PromptsSummary(train=len(train), eval=len(evals), eval_sets=by_set or None,
                              eval_with_reference=labelled, overlap_dropped=len(overlap),
                              held_out=0 if s.has_eval else len(evals))
