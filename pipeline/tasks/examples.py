"""Worked examples for the teacher's prompt, chosen from the user's own labelled rows.

`[task] worked_examples = k`: k rows per label (label tasks) or k rows (json and text
tasks) that carry a reference — from `examples_data`, else the train data, never a row whose
prompt is also in the eval data — chosen with a fixed seed, become the few-shot turns of the
teacher's default prompt (and so of the bench's teacher and "base + few-shot" rows). The
student keeps its short prompt: it learns the task from the teacher's answers.

Example:
    >>> from pipeline.tasks.examples import choose
    >>> rows = [{"id": str(i), "prompt": f"p{i}", "reference": "ab"[i % 2]} for i in range(6)]
    >>> [r["reference"] for r in choose(rows, 2, labels=("a", "b"))]
    ['a', 'b', 'a', 'b']
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

SEED = 0  # the same rows on every load


def choose(rows: list[dict[str, Any]], k: int, labels: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """k labelled rows (k per label, round-robin over the labels, when `labels` are given)."""
    pool = [r for r in rows if r["reference"] is not None]
    random.Random(SEED).shuffle(pool)
    if not labels:
        return pool[:k]
    per = {lab: [r for r in pool if r["reference"] == lab][:k] for lab in labels}
    return [per[lab][i] for i in range(k) for lab in labels if i < len(per[lab])]


def worked_examples(data: dict[str, Any], k: int) -> list[dict[str, str]]:
    """The few-shot turns ({"user", "assistant"}) for a `[task]` table being resolved."""
    from pipeline.tasks import make_task
    from pipeline.tasks.base import TaskSpec
    from pipeline.tasks.inputs import Columns, load_rows, normalized_prompt

    kind = data["kind"]
    task = make_task(TaskSpec(name=str(data.get("name", "")), kind=kind,
                              json_schema=data.get("json_schema"),
                              labels=tuple(data.get("labels", ())),
                              aliases=dict(data.get("aliases", {}))))
    cols = Columns(**{key: data[key] for key in ("id_field", "prompt_field", "reference_field",
                                                 "prompt_template") if data.get(key)})
    source = data.get("examples_data") or data.get("train_data")
    if not source:
        raise ValueError("worked_examples needs examples_data or train_data with references")
    rows = load_rows(Path(source), "examples data", task, cols)
    if data.get("eval_data"):  # never an eval row, even one the train file repeats
        held = {normalized_prompt(r["prompt"])
                for r in load_rows(Path(data["eval_data"]), "eval data", task, cols)}
        rows = [r for r in rows if normalized_prompt(r["prompt"]) not in held]
    chosen = choose(rows, k, task.spec.labels if kind == "label" else ())
    if not chosen:
        raise ValueError(f"worked_examples: no row of {source} carries a reference in column "
                         f"'{cols.reference_field}': give examples_data with labelled rows")
    return [{"user": r["prompt"], "assistant": task.canonical(r["reference"])} for r in chosen]
