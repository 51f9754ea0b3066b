"""Quality beyond the reference metric: agreement with the teacher, and with the fp32 student.

Example:
    >>> from pipeline.measure.quality import greedy_agreement, teacher_agreement
    >>> from pipeline.tasks import make_task
    >>> from pipeline.tasks.base import TaskSpec
    >>> task = make_task(TaskSpec(name="t", kind="label", labels=("yes", "no"), primary="accuracy"))
    >>> teacher_agreement([{"teacher": "yes", "distilled": "Yes"},
    ...                    {"teacher": "no", "distilled": "yes"}], task)
    {'distilled': 0.5}
    >>> greedy_agreement([{"distilled_torch": "x", "distilled": "x"},
    ...                   {"distilled_torch": "x", "distilled": "y"}], "distilled_torch")
    {'distilled': 0.5}
"""

from __future__ import annotations

from typing import Any

from pipeline.tasks.base import Task


def teacher_agreement(answers: list[dict[str, Any]], task: Task) -> dict[str, float]:
    """Each role's answers scored against the teacher's as references (the task's primary
    metric), on the prompts where the teacher's answer is valid."""
    pairs: dict[str, tuple[list[Any], list[Any]]] = {}
    for row in answers:
        teacher, _ = task.parse(row.get("teacher", ""))
        if teacher is None:
            continue  # no valid teacher answer to agree with
        for role, text in row.items():
            if role in ("id", "reference", "teacher"):
                continue
            preds, refs = pairs.setdefault(role, ([], []))
            preds.append(task.parse(text)[0])
            refs.append(teacher)
    return {role: round(task.evaluate(p, r)[task.spec.primary], 4) for role, (p, r) in pairs.items()}


STUDENT_ROLES = ("base_fp", "base", "distilled_fp", "distilled")  # student prompt + vocabulary


def greedy_agreement(answers: list[dict[str, Any]], reference: str) -> dict[str, float]:
    """Share of prompts on which each artifact's greedy answer is exactly the reference
    artifact's (the fp32 student): an export or quantization that changes any token of an
    answer shows here, even where the task metric does not move."""
    totals: dict[str, list[bool]] = {}
    for row in answers:
        if reference not in row:
            continue
        for role in STUDENT_ROLES:
            if role in row:
                totals.setdefault(role, []).append(row[role] == row[reference])
    return {role: round(sum(v) / len(v), 4) for role, v in totals.items() if v}
