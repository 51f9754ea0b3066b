"""The fine-tuned-on-your-labels baseline: which train rows it trains on, when it is skipped,
and how the report compares it with the distilled student."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.outputs import KEPT, TRAINING_MODE
from pipeline.stage import StageContext
from pipeline.stages.labels import LabelsSettings, LabelsStage
from pipeline.tasks.base import TaskSpec
from pipeline.tasks.inputs import TRAIN_FILE

SPEC = TaskSpec(name="t", kind="label", labels=("billing", "shipping"), primary="accuracy")


def _run(tmp_path: Path, references: list[str | None], enabled: bool = True) -> tuple[Path, int]:
    prompts = tmp_path / "prompts"
    prompts.mkdir(parents=True)
    (prompts / TRAIN_FILE).write_text("".join(
        json.dumps({"id": str(i), "prompt": f"ticket {i}", "reference": ref}) + "\n"
        for i, ref in enumerate(references)))
    out = tmp_path / "out"
    out.mkdir()
    summary = LabelsStage().run(StageContext(name="labels", settings=LabelsSettings(
        task=SPEC, enabled=enabled), inputs={"prompts": prompts}, out_dir=out))
    return out, summary.rows


def test_labelled_train_rows_become_training_rows_with_canonical_answers(tmp_path: Path) -> None:
    out, rows = _run(tmp_path, ["billing", None, "shipping"] * 4)
    kept = [json.loads(x) for x in (out / KEPT).read_text().splitlines()]
    assert rows == 8 and len(kept) == 8  # the unlabelled rows are not trained on
    assert kept[0] == {"id": "0", "prompt": "ticket 0", "response": "billing"}
    mode = json.loads((out / TRAINING_MODE).read_text())
    assert mode["mode"] == "sequence" and mode["source"] == "labels"  # no teacher involved


def test_too_few_labels_or_switched_off_train_nothing(tmp_path: Path) -> None:
    out, rows = _run(tmp_path / "few", ["billing"] * 7)
    assert rows == 0 and not (out / KEPT).exists()
    out, rows = _run(tmp_path / "off", ["billing"] * 20, enabled=False)
    assert rows == 0 and not (out / KEPT).exists()


def test_the_report_says_whether_the_teacher_added_anything() -> None:
    from pipeline.measure.roles import Role
    from pipeline.measure.uncertainty import labels_comparison
    from pipeline.report.render import labels_line
    from pipeline.tasks import make_task

    task = make_task(SPEC)
    refs = ["billing", "shipping"] * 20
    eval_rows = [{"reference": r} for r in refs]
    # the distilled student right everywhere, the labels-only one right on half
    wrong = {"billing": "shipping", "shipping": "billing"}
    answers = [{Role.DISTILLED_TORCH: r, Role.LABELS_TORCH: r if i % 4 < 2 else wrong[r]}
               for i, r in enumerate(refs)]
    cmp = labels_comparison(task, answers, eval_rows)
    assert cmp is not None and cmp["delta"] == 0.5 and cmp["ci"][0] > 0 and cmp["prompts"] == 40
    assert "the teacher's data added to your labels" in labels_line(cmp)
    assert labels_comparison(task, [{Role.DISTILLED_TORCH: "billing"}], eval_rows[:1]) is None
