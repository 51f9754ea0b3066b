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
    >>> invented_spans([{"city": "Milk River"}, {"city": "Milan"}],
    ...                ["ship to Milan", "ship to Milan"], ("city",))
    0.5
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from pipeline.measure.roles import STUDENT_ROLES, Role
from pipeline.tasks.base import Task


def _folded(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text).casefold()).strip()


def invented_spans(answers: list[Any], prompts: list[str], fields: tuple[str, ...]) -> float:
    """Share of answers with a value in `fields` that does not occur in its prompt (case and
    spacing aside): names, places and products the model should have copied but made up or
    garbled. Invalid answers (None) count as not invented; the valid rate shows them."""
    if not answers:
        return 0.0
    invented = 0
    for answer, prompt in zip(answers, prompts, strict=True):
        if not isinstance(answer, dict):
            continue
        text = _folded(prompt)
        values = [answer.get(f) for f in fields]
        invented += any(isinstance(v, str) and _folded(v) not in text for v in values)
    return invented / len(answers)


def teacher_pairs(answers: list[dict[str, Any]], task: Task) -> dict[str, tuple[list[Any], list[Any]]]:
    """Per role: (its parsed answers, the teacher's as references), on the prompts where the
    teacher's answer is valid — what agreement with the teacher is computed on."""
    pairs: dict[str, tuple[list[Any], list[Any]]] = {}
    for row in answers:
        teacher, _ = task.parse(row.get(Role.TEACHER, ""))
        if teacher is None:
            continue  # no valid teacher answer to agree with
        for role, text in row.items():
            if role in ("id", "reference", Role.TEACHER):
                continue
            preds, refs = pairs.setdefault(role, ([], []))
            preds.append(task.parse(text)[0])
            refs.append(teacher)
    return pairs


def teacher_agreement(answers: list[dict[str, Any]], task: Task) -> dict[str, float]:
    """Each role's answers scored against the teacher's as references (the task's primary
    metric), on the prompts where the teacher's answer is valid."""
    return {role: round(task.evaluate(p, r)[task.spec.primary], 4)
            for role, (p, r) in teacher_pairs(answers, task).items()}


def greedy_agreement(answers: list[dict[str, Any]], reference: str) -> dict[str, float]:
    """Share of prompts on which each artifact's greedy answer is exactly the reference
    artifact's (the fp32 student): an export or quantization that changes any token of an
    answer shows here, even where the task metric does not move."""
    return {role: round(sum(v) / len(v), 4) for role, v in greedy_matches(answers, reference).items()}


def greedy_matches(answers: list[dict[str, Any]], reference: str) -> dict[str, list[float]]:
    """Per student role, 1.0/0.0 per prompt: the same answer as the reference artifact."""
    totals: dict[str, list[float]] = {}
    for row in answers:
        if reference not in row:
            continue
        for role in STUDENT_ROLES:
            if role in row:
                totals.setdefault(str(role), []).append(float(row[role] == row[reference]))
    return totals
