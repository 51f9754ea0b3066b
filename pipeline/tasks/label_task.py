"""The `label` kind: the answer is one label from a declared set.

A reply matches a label (or one of its aliases) ignoring case, spacing, quotes and a
trailing full stop. Metrics: accuracy, macro-F1 over the declared labels, valid rate; the
details hold per-class precision/recall/F1 and the confusion matrix (scikit-learn's), which
the report draws.

Example:
    >>> from pipeline.tasks.base import TaskSpec
    >>> from pipeline.tasks.label_task import LabelTask
    >>> t = LabelTask(TaskSpec(name="t", kind="label", labels=("billing", "shipping"),
    ...                        aliases={"invoice": "billing"}))
    >>> t.parse(" Billing."), t.parse("invoice"), t.parse("refund")
    (('billing', None), ('billing', None), (None, 'unknown_label'))
    >>> t.evaluate(["billing", None], ["billing", "shipping"])["accuracy"]
    0.5
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pipeline.tasks.base import TaskSpec

INVALID = "(invalid)"  # the confusion matrix's column for replies that are no label


def _key(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip("\"'`*").strip().rstrip(".").strip().lower())


class LabelTask:
    version: ClassVar[str] = "1"
    exact_metric: ClassVar[str | None] = "accuracy"
    mean_metrics: ClassVar[tuple[str, ...]] = ("accuracy", "valid")  # macro-F1 is not
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1", "valid")
    columns: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("valid", "valid", "{:.2f}"), ("accuracy", "accuracy", "{:.3f}"),
        ("macro-F1", "macro_f1", "{:.3f}"))

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.labels = spec.labels
        self._lookup = {_key(label): label for label in spec.labels}
        self._lookup |= {_key(alias): label for alias, label in spec.aliases.items()}

    def reference(self, raw: Any) -> str:
        label = self._lookup.get(_key(str(raw))) if isinstance(raw, str | int) else None
        if label is None:
            raise ValueError(f"'{raw}' is not one of the labels ({', '.join(self.labels)}) "
                             "or their aliases")
        return label

    def parse(self, text: str) -> tuple[str | None, str | None]:
        if not text.strip():
            return None, "empty"
        label = self._lookup.get(_key(text))
        return (label, None) if label is not None else (None, "unknown_label")

    def canonical(self, answer: str) -> str:
        return answer

    def score(self, pred: str | None, ref: str) -> dict[str, float]:
        return {"valid": float(pred is not None), "accuracy": float(pred == ref)}

    def metric(self, name: str, preds: list[Any], refs: list[Any]) -> float:
        """One metric alone (the bootstrap recomputes it on each resample of the prompts)."""
        from sklearn.metrics import f1_score

        if name != "macro_f1":
            return float(self.evaluate(preds, refs)[name])
        shown = [p if p is not None else INVALID for p in preds]
        # macro over the labels that occur in the references or the answers: a declared
        # label nobody used or predicted would only add a meaningless 0
        present = [lab for lab in self.labels if lab in refs or lab in shown]
        return float(f1_score(refs, shown, labels=present, average="macro", zero_division=0))

    def evaluate(self, preds: list[Any], refs: list[Any]) -> dict[str, Any]:
        from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

        if not refs:
            return {}
        shown = [p if p is not None else INVALID for p in preds]
        labels = list(self.labels)
        precision, recall, f1, support = precision_recall_fscore_support(
            refs, shown, labels=labels, average=None, zero_division=0)
        matrix = confusion_matrix(refs, shown, labels=[*labels, INVALID])
        return {
            "valid": sum(p is not None for p in preds) / len(preds),
            "accuracy": sum(p == r for p, r in zip(preds, refs, strict=True)) / len(refs),
            "macro_f1": self.metric("macro_f1", preds, refs),
            "details": {"per_class": {lab: {"precision": round(float(p), 4),
                                            "recall": round(float(r), 4),
                                            "f1": round(float(f), 4), "support": int(s)}
                                      for lab, p, r, f, s in zip(labels, precision, recall, f1,
                                                                 support, strict=True)},
                        "confusion": {"labels": [*labels, INVALID],
                                      "matrix": matrix[: len(labels)].tolist()}},
        }

    @staticmethod
    def contract(spec: TaskSpec) -> str:
        return "Reply with exactly one of these labels and nothing else: " + ", ".join(spec.labels)
