"""Filters for teacher output: small functions, registered once, each drop with its reason.

Per-row checks (configured by name, run in order, first failure is the drop reason):
  length     answer shorter/longer than the bounds
  refusal    the teacher refused or apologised instead of answering
  validator  the task's parser, a JSON Schema, a regex, or one of a fixed set of labels
  reference  the answer contradicts the row's reference (rows without one pass)
Then over groups: dedupe (exact or normalised prompt + answer) and self-consistency
(with n samples per prompt, keep the majority answer; drop prompts without a majority).

Example:
    >>> from pipeline.filters import FilterSettings, apply_filters
    >>> from pipeline.tasks.base import TaskSpec
    >>> s = FilterSettings(task=TaskSpec(name="t", kind="label", labels=("yes", "no")),
    ...                    checks=["validator"], dedupe="exact")
    >>> rows = [{"id": str(i), "sample": 0, "prompt": f"p{i}", "response": r}
    ...         for i, r in enumerate(["Yes", "maybe"])]
    >>> kept, dropped = apply_filters(rows, s)
    >>> [r["answer"] for r in kept], [r["drop_reason"] for r in dropped]
    (['yes'], ['unknown_label'])
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.outputs import TeacherRow
from pipeline.stage import Settings
from pipeline.tasks import make_task
from pipeline.tasks.base import TaskSpec
from pipeline.tasks.inputs import normalized_prompt


class FilterSettings(Settings):
    """The filter stage's settings (and the checks' arguments)."""

    task: TaskSpec
    checks: list[str] = ["length", "refusal", "validator", "reference"]
    min_response_chars: int = 1
    max_response_chars: int = 600
    validator: str = "task"
    pattern: str | None = None  # validator = "regex"
    labels: list[str] = []  # validator = "labels"
    json_schema: dict[str, Any] | None = None  # validator = "json_schema": the schema's content
    dedupe: str = "normalized"
    n_samples: int = 1


# Refusal / apology openings, as data. Matched at the start of the answer, case-insensitive.
REFUSAL_PATTERNS = (
    r"i'?m sorry", r"i am sorry", r"sorry,? (but )?i", r"i can(no|')t", r"i cannot", r"i am unable",
    r"i'?m unable", r"as an ai", r"unfortunately,? i", r"i apologi[sz]e", r"i won'?t be able",
)
_REFUSAL = re.compile(r"^\W*(" + "|".join(REFUSAL_PATTERNS) + r")", re.IGNORECASE)

class FilterRow(TeacherRow, total=False):
    """A teacher row as the filters see it: the answer kept (trimmed, or the task's canonical
    form), the parsed answer, and why it was dropped."""

    answer: str
    parsed: Any
    drop_reason: str


Check = Callable[[FilterRow, FilterSettings], str | None]


def _length(row: FilterRow, s: FilterSettings) -> str | None:
    n = len(row["response"].strip())
    if n == 0:
        return "empty"
    if n < s.min_response_chars:
        return "too_short"
    return "too_long" if n > s.max_response_chars else None


def _refusal(row: FilterRow, s: FilterSettings) -> str | None:
    return "refusal" if _REFUSAL.match(row["response"]) else None


def _validator(row: FilterRow, s: FilterSettings) -> str | None:
    """Validate; on success store the canonical answer in row['answer'] (the training target)."""
    kind, text = s.validator, row["response"].strip()
    if kind == "task":
        task = make_task(s.task)
        obj, why = task.parse(text)
        if obj is None:
            return why
        row["answer"], row["parsed"] = task.canonical(obj), obj
        return None
    if kind == "regex":
        ok = re.fullmatch(s.pattern or "", text, flags=re.DOTALL) is not None
    elif kind == "labels":
        ok = text in s.labels
    else:  # json_schema
        import jsonschema

        try:
            jsonschema.validate(json.loads(text), s.json_schema or {})
            ok = True
        except (json.JSONDecodeError, jsonschema.ValidationError):
            ok = False
    row["answer"] = text
    return None if ok else f"{kind}_mismatch"


def _reference(row: FilterRow, s: FilterSettings) -> str | None:
    """Drop answers that contradict a known reference (as the task compares answers; a
    free-text task is not held to its reference word for word)."""
    ref = row.get("reference")
    if ref is None:
        return None
    if "parsed" in row:
        task = make_task(s.task)
        if task.exact_metric is None:
            return None
        agrees = task.score(row["parsed"], ref)[task.exact_metric] == 1.0
        return None if agrees else "contradicts_reference"
    return None if row.get("answer", row["response"]).strip() == str(ref).strip() else "contradicts_reference"


CHECKS: dict[str, Check] = {"length": _length, "refusal": _refusal, "validator": _validator,
                            "reference": _reference}


def _self_consistency(kept: list[FilterRow], n_samples: int
                      ) -> tuple[list[FilterRow], list[FilterRow]]:
    """Per prompt id: keep one row with the answer given by more than half the samples."""
    by_id: dict[str, list[FilterRow]] = defaultdict(list)
    for row in kept:
        by_id[row["id"]].append(row)
    out, dropped = [], []
    for rows in by_id.values():
        answer, count = Counter(r["answer"] for r in rows).most_common(1)[0]
        if count * 2 > n_samples:
            winner = next(r for r in rows if r["answer"] == answer)
            out.append({**winner, "votes": count})
            dropped += [{**r, "drop_reason": "majority_duplicate" if r["answer"] == answer
                         else "minority_answer"} for r in rows if r is not winner]
        else:
            dropped += [{**r, "drop_reason": "no_majority"} for r in rows]
    return out, dropped


def apply_filters(rows: list[TeacherRow], s: FilterSettings
                  ) -> tuple[list[FilterRow], list[FilterRow]]:
    """Split teacher rows into (kept, dropped); dropped rows carry 'drop_reason'."""
    kept: list[FilterRow] = []
    dropped: list[FilterRow] = []
    for original in rows:
        row = FilterRow(**original)
        if row.get("error"):
            dropped.append({**row, "drop_reason": "teacher_failed"})
            continue
        reason = next((r for name in s.checks if (r := CHECKS[name](row, s))), None)
        if reason:
            dropped.append({**original, "drop_reason": reason})
        else:
            row.setdefault("answer", row["response"].strip())
            kept.append(row)
    if s.n_samples > 1:
        kept, minority = _self_consistency(kept, s.n_samples)
        dropped += minority
    if s.dedupe != "off":
        seen: set[tuple[str, str]] = set()
        unique = []
        for row in kept:
            prompt = normalized_prompt(row["prompt"]) if s.dedupe == "normalized" else row["prompt"]
            pair = (prompt, row["answer"])
            if pair in seen:
                dropped.append({**row, "drop_reason": "duplicate"})
            else:
                seen.add(pair)
                unique.append(row)
        kept = unique
    return kept, dropped


def load_schema(path: str | None) -> dict[str, Any] | None:
    """The JSON Schema file for validator = 'json_schema' (read at config time, keyed by content)."""
    if not path:
        return None
    from pipeline.errors import UserError
    from pipeline.tasks.json_task import read_schema

    try:
        return read_schema(Path(path))
    except ValueError as exc:
        raise UserError(f"filter.json_schema_file {exc}") from None
