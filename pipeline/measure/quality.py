"""Quality beyond the reference metric: agreement with the teacher, and with the fp32 student.

Example:
    >>> from pipeline.measure.quality import greedy_agreement, teacher_agreement
    >>> a = '{"name":"A B","item":"x","quantity":1,"city":"C","date":"2025-01-01"}'
    >>> teacher_agreement([{"teacher": a, "distilled": a}])
    {'distilled': 1.0}
    >>> greedy_agreement([{"distilled_torch": "x", "distilled": "x"},
    ...                   {"distilled_torch": "x", "distilled": "y"}], "distilled_torch")
    {'distilled': 0.5}
"""

from __future__ import annotations

from typing import Any


def teacher_agreement(answers: list[dict[str, Any]]) -> dict[str, float]:
    """Mean field agreement of each role's answer with the teacher's (where the teacher's parses)."""
    from pipeline.tasks.extraction import parse_answer, score

    totals: dict[str, list[float]] = {}
    for row in answers:
        teacher, _ = parse_answer(row.get("teacher", ""))
        if teacher is None:
            continue  # no valid teacher answer to agree with
        for role, text in row.items():
            if role in ("id", "reference", "teacher"):
                continue
            pred, _ = parse_answer(text)
            totals.setdefault(role, []).append(score(pred, teacher)["field_accuracy"])
    return {role: round(sum(v) / len(v), 4) for role, v in totals.items() if v}


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
