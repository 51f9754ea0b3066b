"""Tasks: prompts + validator + metric. One registry; the default is `extraction`.

Example:
    >>> from pipeline.tasks import load_rows, shipped_split
    >>> rows = load_rows(shipped_split("extraction", "eval"), "eval data")
    >>> "reference" in rows[0]
    True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.errors import UserError

DATA_DIR = Path(__file__).with_name("data")
TASK_NAMES = ("extraction",)


def few_shot_messages(system: str, shots: list[dict[str, str]], template: str
                      ) -> list[dict[str, str]]:
    """The teacher's chat up to a row's question: its system prompt and worked examples."""
    messages = [{"role": "system", "content": system}]
    for shot in shots:
        messages += [{"role": "user", "content": template.format(prompt=shot["user"])},
                     {"role": "assistant", "content": shot["assistant"]}]
    return messages


def shipped_split(task: str, split: str) -> Path:
    """Path of a split shipped with the package."""
    return DATA_DIR / f"{task}-{split}.jsonl"


def load_rows(path: Path, what: str, need_reference: bool = False) -> list[dict[str, Any]]:
    """Read a JSONL file of `{"id", "prompt", "reference"?}` rows, validating each line."""
    if not path.is_file():
        raise UserError(f"{what} file not found: {path}")
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{what} {path}:{lineno}: not valid JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise UserError(f"{what} {path}:{lineno}: each row needs a non-empty string 'prompt'")
        row_id = str(row.get("id", f"row-{lineno}"))
        if row_id in seen:
            raise UserError(f"{what} {path}:{lineno}: duplicate id '{row_id}'")
        if need_reference and not isinstance(row.get("reference"), dict):
            raise UserError(f"{what} {path}:{lineno}: eval rows need a 'reference' JSON object")
        seen.add(row_id)
        rows.append({"id": row_id, "prompt": row["prompt"], "reference": row.get("reference")})
    if not rows:
        raise UserError(f"{what} {path} has no rows: give a JSONL file with one prompt per line")
    return rows
