"""What every task kind is: the `Task` Protocol, its settings (`TaskSpec`) and shared helpers.

A task is data (a `[task]` section of the build config: kind, contract, prompts, files)
plus one kind class that turns answers into scores. Stages never import a concrete kind:
they build the task from the `TaskSpec` in their settings with `pipeline.tasks.make_task`.

Example:
    >>> from pipeline.tasks.base import TaskSpec, extract_json
    >>> TaskSpec(name="t", kind="label", labels=("a", "b")).primary
    ''
    >>> extract_json('Sure: {"a": 1} trailing')
    ({'a': 1}, None)
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict


class TaskSpec(BaseModel):
    """What a task's parsing and scoring depend on: it enters every cache key that reads it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: str
    version: str = ""  # the kind's code version: a change to parsing or scoring re-keys
    json_schema: dict[str, Any] | None = None  # json
    labels: tuple[str, ...] = ()  # label
    aliases: dict[str, str] = {}  # label: other spellings of a label
    primary: str = ""  # the metric the goal, the gate and the verdict use
    # json: string fields an answer must copy from the prompt (names, places); a value that
    # does not occur in the prompt is an "invented span", reported per artifact
    copy_fields: tuple[str, ...] = ()
    primary_set: str | None = None  # the eval set the verdict and gate use (several sets)


@runtime_checkable
class Task(Protocol):
    """One kind of answer. `metrics` names what `evaluate` returns (the first is the default
    primary metric); `columns` are the report's (header, metric, format) columns."""

    version: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]
    exact_metric: ClassVar[str | None]  # 1.0 when an answer equals the reference (None: free text)
    columns: ClassVar[tuple[tuple[str, str, str], ...]]
    spec: TaskSpec

    def reference(self, raw: Any) -> Any:
        """A reference answer from a data file, validated; ValueError names what is wrong."""
        ...

    def parse(self, text: str) -> tuple[Any, str | None]:
        """A model's reply -> (answer, None), or (None, the reason it is not valid)."""
        ...

    def canonical(self, answer: Any) -> str:
        """The training target for a valid answer (one short, fixed spelling)."""
        ...

    def score(self, pred: Any, ref: Any) -> dict[str, float]:
        """One answer (None: invalid) against one reference."""
        ...

    def evaluate(self, preds: list[Any], refs: list[Any]) -> dict[str, Any]:
        """A split's metrics (floats, named in `metrics`) and, under "details", anything
        else the report shows (e.g. a confusion matrix)."""
        ...


def mean_scores(scores: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each per-answer score over a split."""
    if not scores:
        return {}
    return {key: sum(s[key] for s in scores) / len(scores) for key in scores[0]}


def extract_json(text: str) -> tuple[Any, str | None]:
    """The first JSON object in a reply, tolerating code fences, prose and trailing text."""
    if not text.strip():
        return None, "empty"
    start = text.find("{")
    if start < 0:
        return None, "invalid_json"
    try:
        # raw_decode stops after the first complete value: '{...} Message: {...}' still parses.
        return json.JSONDecoder().raw_decode(text, start)[0], None
    except json.JSONDecodeError:
        return None, "invalid_json"


def norm_text(value: Any) -> str:
    """Lenient text compare: case, spacing, a leading article and a plural 's' do not count."""
    text = re.sub(r"\s+", " ", str(value).strip().lower()).strip(" .,;:!\"'`")
    text = re.sub(r"^(a|an|the)\s+", "", text)
    return re.sub(r"(?<=\w)(es|s)$", "", text)
