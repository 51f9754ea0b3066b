"""The `text` kind: free-form answers scored against reference texts with chrF (sacrebleu).

chrF is the corpus-level character n-gram F-score (sacrebleu's, scaled to 0..1); `exact`
is the share of answers equal to the reference up to case and spacing.

Example:
    >>> from pipeline.tasks.base import TaskSpec
    >>> from pipeline.tasks.text_task import TextTask
    >>> t = TextTask(TaskSpec(name="t", kind="text"))
    >>> t.evaluate(["The parcel ships Monday."], ["The parcel ships Monday."])["chrf"]
    1.0
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pipeline.tasks.base import TaskSpec


def _key(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


class TextTask:
    version: ClassVar[str] = "1"
    exact_metric: ClassVar[str | None] = None
    mean_metrics: ClassVar[tuple[str, ...]] = ("exact", "valid")  # corpus chrF is not
    metrics: ClassVar[tuple[str, ...]] = ("chrf", "exact", "valid")
    columns: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("valid", "valid", "{:.2f}"), ("chrF", "chrf", "{:.3f}"), ("exact", "exact", "{:.3f}"))

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec

    def reference(self, raw: Any) -> str:
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError("a reference must be a non-empty string")
        return raw.strip()

    def parse(self, text: str) -> tuple[str | None, str | None]:
        return (text.strip(), None) if text.strip() else (None, "empty")

    def canonical(self, answer: str) -> str:
        return answer

    def score(self, pred: str | None, ref: str) -> dict[str, float]:
        from sacrebleu.metrics import CHRF

        chrf = CHRF().sentence_score(pred or "", [ref]).score / 100 if pred else 0.0
        return {"valid": float(pred is not None), "chrf": chrf,
                "exact": float(pred is not None and _key(pred) == _key(ref))}

    def metric(self, name: str, preds: list[Any], refs: list[Any]) -> float:
        """One metric alone (the bootstrap recomputes it on each resample of the prompts)."""
        from sacrebleu.metrics import CHRF

        if name != "chrf":
            return float(self.evaluate(preds, refs)[name])
        return CHRF().corpus_score([p or "" for p in preds], [list(refs)]).score / 100

    def evaluate(self, preds: list[Any], refs: list[Any]) -> dict[str, Any]:
        if not refs:
            return {}
        chrf = self.metric("chrf", preds, refs)
        return {"valid": sum(p is not None for p in preds) / len(preds), "chrf": round(chrf, 6),
                "exact": sum(p is not None and _key(p) == _key(r)
                             for p, r in zip(preds, refs, strict=True)) / len(refs)}

    @staticmethod
    def contract(spec: TaskSpec) -> str:
        return "Reply with the answer only."
