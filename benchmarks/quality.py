"""Quality beyond the reference metric: how often each artifact agrees with the teacher.

Example:
    >>> from benchmarks.quality import teacher_agreement
    >>> a = '{"name":"A B","item":"x","quantity":1,"city":"C","date":"2025-01-01"}'
    >>> teacher_agreement([{"teacher": a, "distilled": a}])
    {'distilled': 1.0}
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
