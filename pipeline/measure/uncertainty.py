"""How sure is a quality figure? Bootstrap intervals over the eval prompts, paired for differences.

Every quality number in the report comes from a few dozen prompts, so a row's metric gets a
95 % percentile-bootstrap interval (prompts resampled with replacement), and every
comparison of two rows on the same prompts (distilled vs base, quantized vs fp32) a *paired*
bootstrap interval of the difference — the same resampled prompts for both rows, so the
prompt-to-prompt variation they share cancels. A difference whose interval holds 0 is not
distinguishable from noise at this eval size. The metric is recomputed by the task's own
`evaluate` on each resample (macro-F1 and corpus chrF are not means of per-prompt scores);
metrics a kind declares as per-prompt means (`mean_metrics`) take a fast numpy path.

Example:
    >>> from pipeline.measure.uncertainty import interval, needed_prompts
    >>> lo, hi = interval([1.0] * 45 + [0.0] * 15)
    >>> round(lo, 2), round(hi, 2)   # 0.75 measured on 60 prompts
    (0.63, 0.85)
    >>> needed_prompts(0.75, (lo, hi), bar=0.8, n=60)  # the bar 0.8 is inside: how many decide
    282
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipeline.measure.roles import Role

LEVEL = 0.95
RESAMPLES = 2000  # per-prompt means: cheap
RESAMPLES_SLOW = 200  # metrics recomputed on each resample (macro-F1: ~5 ms a call)
SEED = 0  # fixed: the same build gives the same intervals


def _draws(n: int, resamples: int) -> np.ndarray:
    return np.random.default_rng(SEED).integers(0, n, size=(resamples, n))


def _percentiles(samples: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return round(float(lo), 4), round(float(hi), 4)


def interval(per_prompt: Sequence[float]) -> tuple[float, float]:
    """95 % bootstrap interval of the mean of per-prompt scores."""
    values = np.asarray(per_prompt, dtype=float)
    if len(values) == 0:
        return (math.nan, math.nan)
    return _percentiles(values[_draws(len(values), RESAMPLES)].mean(axis=1))


def paired_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """95 % paired-bootstrap interval of mean(b) − mean(a) on the same prompts."""
    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    return interval(diff.tolist())


def _statistic(task: Any, metric: str, preds: list[Any], refs: list[Any]
               ) -> tuple[Callable[[np.ndarray], float], int]:
    """(value of the metric on a resample of prompt indices, resamples to draw)."""
    if metric in getattr(task, "mean_metrics", ()):
        scores = np.array([task.score(p, r)[metric] for p, r in zip(preds, refs, strict=True)])
        return (lambda idx: float(scores[idx].mean())), RESAMPLES
    # a kind's metric() computes one metric alone; evaluate() would compute them all
    one = getattr(task, "metric", None) or (lambda m, p, r: float(task.evaluate(p, r)[m]))
    return (lambda idx: one(metric, [preds[i] for i in idx], [refs[i] for i in idx])), RESAMPLES_SLOW


def metric_interval(task: Any, metric: str, preds: list[Any], refs: list[Any]) -> tuple[float, float]:
    """95 % bootstrap interval of the task metric of one artifact's parsed answers."""
    if not refs:
        return (math.nan, math.nan)
    stat, resamples = _statistic(task, metric, preds, refs)
    return _percentiles(np.array([stat(idx) for idx in _draws(len(refs), resamples)]))


def paired_metric_interval(task: Any, metric: str, preds_a: list[Any], preds_b: list[Any],
                           refs: list[Any]) -> tuple[float, float]:
    """95 % paired-bootstrap interval of metric(b) − metric(a) on the same resampled prompts."""
    if not refs:
        return (math.nan, math.nan)
    stat_a, resamples = _statistic(task, metric, preds_a, refs)
    stat_b, _ = _statistic(task, metric, preds_b, refs)
    draws = _draws(len(refs), resamples)
    return _percentiles(np.array([stat_b(idx) - stat_a(idx) for idx in draws]))


def needed_prompts(value: float, ci: tuple[float, float], bar: float, n: int) -> int | None:
    """About how many eval prompts would put the bar outside the interval, assuming the
    spread shrinks as 1/√n (None when the value sits on the bar: no eval size decides it)."""
    gap = abs(value - bar)
    if gap == 0:
        return None
    half = (ci[1] - ci[0]) / 2
    return max(n, math.ceil(n * (half / gap) ** 2))


def distinguishable(ci: tuple[float, float]) -> bool:
    """Whether a difference's interval excludes zero."""
    return not (ci[0] <= 0 <= ci[1])


def add_intervals(task: Any, metric: str, rows: list[dict[str, Any]], answers: list[dict[str, Any]],
                  eval_rows: list[dict[str, Any]], steps: list[dict[str, Any]]) -> None:
    """Put the intervals into the report's rows (`ci`) and attribution steps (`ci`,
    `distinguishable`), on the prompts of the primary eval set. (The decision computes its
    own, widening the eval where a check is undecided: pipeline.measure.decision.)"""
    primary = next((r["eval_set"] for r in rows if r.get("eval_set")), None)
    keep = [i for i, e in enumerate(eval_rows) if primary is None or e.get("set") == primary]
    roles = {role for a in answers for role in a} - {"id", "reference"}
    for row in rows:
        if row["role"] in roles:
            idx = answered(answers, keep, row["role"])
            row["ci"] = list(metric_interval(task, metric, *_on(task, answers, eval_rows, idx,
                                                                 row["role"])))
    for step in steps:
        a, b = step.get("from_role"), step.get("to_role")
        if a in roles and b in roles:
            idx = answered(answers, answered(answers, keep, a), b)
            (pa, refs), (pb, _) = (_on(task, answers, eval_rows, idx, r) for r in (a, b))
            ci = paired_metric_interval(task, metric, pa, pb, refs)
            step["ci"], step["distinguishable"] = list(ci), distinguishable(ci)
            if len(idx) < len(keep):  # a row stopped early: the step on the prompts both answered
                step["delta"] = round(task.evaluate(pb, refs)[metric] - task.evaluate(pa, refs)[metric], 4)
                step["prompts"] = len(idx)


def answered(answers: list[dict[str, Any]], idx: list[int], role: str) -> list[int]:
    """The prompts of `idx` the role answered (a row stopped early answered only some)."""
    return [i for i in idx if role in answers[i]]


def _on(task: Any, answers: list[dict[str, Any]], eval_rows: list[dict[str, Any]],
        idx: list[int], role: str) -> tuple[list[Any], list[Any]]:
    """(the role's parsed answers, the references) on the prompts `idx`."""
    return ([task.parse(answers[i][role])[0] for i in idx], [eval_rows[i]["reference"] for i in idx])


def add_other_intervals(task: Any, rows: list[dict[str, Any]], answers: list[dict[str, Any]],
                        eval_rows: list[dict[str, Any]], reference: str = Role.DISTILLED_TORCH) -> None:
    """95 % bootstrap intervals for the figures beside the primary metric, each over the
    prompts its value is computed on (pipeline.measure.quality): exact match (`exact_ci`,
    primary eval set), agreement with the teacher (`teacher_agreement_ci`: the primary metric
    against the teacher's valid answers) and the same greedy answer as the fp32 student
    (`greedy_agreement_ci`, every prompt)."""
    from pipeline.measure.quality import greedy_matches, teacher_pairs

    exact, primary = getattr(task, "exact_metric", None), task.spec.primary
    sets = {r.get("eval_set") for r in rows if r.get("eval_set")}
    keep = [i for i, e in enumerate(eval_rows) if not sets or e.get("set") in sets]
    with_teacher, same = teacher_pairs(answers, task), greedy_matches(answers, reference)
    for row in rows:
        role = row["role"]
        if exact and exact != primary and exact in row and answers and any(role in a for a in answers):
            row["exact_ci"] = list(metric_interval(
                task, exact, *_on(task, answers, eval_rows, answered(answers, keep, role), role)))
        if row.get("teacher_agreement") is not None and role in with_teacher:
            row["teacher_agreement_ci"] = list(metric_interval(task, primary, *with_teacher[role]))
        if row.get("greedy_agreement") is not None and role in same:
            row["greedy_agreement_ci"] = list(interval(same[role]))


def labels_comparison(task: Any, answers: list[dict[str, Any]], eval_rows: list[dict[str, Any]],
                      ) -> dict[str, Any] | None:
    """The distilled fp32 student against the same student fine-tuned on the user's labels
    alone (both fp32, torch) on the primary metric, paired on the same prompts: did the
    teacher add anything over the labels? None without that row."""
    a, b = Role.LABELS_TORCH, Role.DISTILLED_TORCH
    idx = [i for i in range(len(eval_rows)) if a in answers[i] and b in answers[i]]
    if not idx:
        return None
    metric = task.spec.primary
    (labels, refs), (distilled, _) = _on(task, answers, eval_rows, idx, a), _on(
        task, answers, eval_rows, idx, b)
    value = (task.evaluate(distilled, refs)[metric] - task.evaluate(labels, refs)[metric])
    ci = paired_metric_interval(task, metric, labels, distilled, refs)
    return {"metric": metric, "delta": round(value, 4), "ci": [round(c, 4) for c in ci],
            "prompts": len(idx), "distinguishable": distinguishable(ci)}
