"""Tasks as data: one registry of task kinds, built-in task presets, the shipped data.

A build's `[task]` section names a kind (`json`, `label`, `text`) with its contract
(a JSON Schema, or labels) and prompts, or names a built-in preset (`extraction`), whose
TOML under `presets/` supplies every key the user leaves out. Stages get the task with
`make_task(spec)`; none imports a kind. Adding a kind is one class with the `Task`
methods and one `register_kind` line.

Example:
    >>> from pipeline.tasks import KINDS, make_task, preset
    >>> sorted(KINDS)
    ['json', 'label', 'text']
    >>> from pipeline.tasks.base import TaskSpec
    >>> make_task(TaskSpec(name="t", kind="label", labels=("a", "b"))).parse("A")
    ('a', None)
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pipeline.errors import UserError
from pipeline.tasks.base import Task, TaskSpec
from pipeline.tasks.json_task import JsonTask
from pipeline.tasks.label_task import LabelTask
from pipeline.tasks.text_task import TextTask

DATA_DIR = Path(__file__).with_name("data")
PRESETS_DIR = Path(__file__).with_name("presets")

# [task] keys that are paths (relative to the config file, or to a preset's TOML)
TASK_PATH_KEYS = ("schema_file", "train_data", "eval_data", "examples_data")
KINDS: dict[str, type] = {}


def register_kind(name: str, cls: type) -> None:
    """Add a task kind: a class taking a `TaskSpec`, with the `Task` methods and a
    `contract(spec)` staticmethod (the output contract in words, for default prompts)."""
    KINDS[name] = cls


register_kind("json", JsonTask)
register_kind("label", LabelTask)
register_kind("text", TextTask)


_MADE: dict[str, Task] = {}


def make_task(spec: TaskSpec) -> Task:
    """The task object for a stage's settings (made once per spec: a schema validator is
    compiled once, not per answer)."""
    if spec.kind not in KINDS:
        raise UserError(f"task.kind '{spec.kind}' is not a task kind: use one of {', '.join(KINDS)}")
    key = spec.model_dump_json()
    if key not in _MADE:
        _MADE[key] = KINDS[spec.kind](spec)
    return _MADE[key]


def presets() -> list[str]:
    """Names of the built-in tasks."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def preset(name: str) -> dict[str, Any] | None:
    """A built-in task's `[task]` keys, its file paths made absolute; None if no such preset."""
    path = PRESETS_DIR / f"{name}.toml"
    if not path.is_file():
        return None
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for key in TASK_PATH_KEYS:
        if key in data:
            data[key] = str((path.parent / data[key]).resolve())
    return data


def shipped_split(task: str, split: str) -> Path:
    """Path of a split shipped with the package."""
    return DATA_DIR / f"{task}-{split}.jsonl"
