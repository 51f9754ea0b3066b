"""Labels stage: the user's own labelled train rows as training data — the "fine-tuned on your
labels" baseline, so the report can say whether the teacher added anything over them.

setup: the prompts step's train rows.
run:   when at least `min_rows` train rows carry a reference, each becomes a training row
       whose answer is the reference's canonical text (what the eval scores), in the filter's
       kept-rows format, and a training-mode file saying "sequence, no teacher"; the
       `distill_labels` step trains the same student with the same recipe on them and
       `bench_labels` measures it (fp32, torch) beside the distilled student. Fewer (the
       default task's train prompts are unlabelled): nothing is written and both later steps
       do nothing.

Example:
    distill-edge build --config examples/tickets/tickets.toml --target cpu-int4
    cat build/cache/labels/*/kept.jsonl | head -2
"""

from __future__ import annotations

import json

from pipeline.config import BuildConfig
from pipeline.outputs import KEPT, TRAINING_MODE, LabelsSummary, TrainingMode, write_doc
from pipeline.stage import Runtime, Settings, StageContext
from pipeline.targets import Target
from pipeline.tasks import make_task
from pipeline.tasks.base import TaskSpec
from pipeline.tasks.inputs import TRAIN_FILE, read_rows

MIN_ROWS = 8  # fewer labelled train rows train nothing worth comparing with


class LabelsSettings(Settings):
    task: TaskSpec
    enabled: bool  # [bench] labels_row
    min_rows: int = MIN_ROWS


class LabelsStage:
    name = "labels"
    libraries = ()
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> LabelsSettings:
        return LabelsSettings(task=config.task.spec, enabled=config.bench.labels_row)

    def runtime(self, config: BuildConfig, target: Target) -> Runtime:
        return Runtime()

    def run(self, ctx: StageContext[LabelsSettings]) -> LabelsSummary:
        s = ctx.settings
        task = make_task(s.task)
        rows = [r for r in read_rows(ctx.inputs["prompts"] / TRAIN_FILE)
                if r["reference"] is not None]
        if not s.enabled or len(rows) < s.min_rows:
            why = ("[bench] labels_row = false" if not s.enabled else
                   f"{len(rows)} labelled train rows (fewer than {s.min_rows})")
            ctx.log(f"no fine-tuned-on-labels row: {why}")
            return LabelsSummary(rows=0, skipped=why)
        with (ctx.out_dir / KEPT).open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"id": r["id"], "prompt": r["prompt"],
                                      "response": task.canonical(r["reference"])},
                                     ensure_ascii=False) + "\n" for r in rows)
        write_doc(ctx.out_dir / TRAINING_MODE, TrainingMode(
            mode="sequence", reason="fine-tuned on the user's labels: no teacher", source="labels"))
        ctx.log(f"{len(rows)} labelled train rows: the fine-tuned-on-labels student trains on them")
        return LabelsSummary(rows=len(rows))
