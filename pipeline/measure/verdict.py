"""Was distillation worth it? Attribution per step and a verdict from the measured rows.

Distillation pays only when (a) the small model used directly is not good enough AND
(b) the teacher is too slow or costly at the user's scale. The user states the quality
bar and the scale in the config's [goal] section; every number here comes from the
bench rows of the same build (same prompts, same hardware, same threads).

Example:
    >>> from pipeline.measure.verdict import decide
    >>> rows = [
    ...   {"role": "teacher", "field_accuracy": 0.96, "seconds_per_request": 3.0},
    ...   {"role": "base", "field_accuracy": 0.10, "seconds_per_request": 0.3},
    ...   {"role": "distilled", "field_accuracy": 0.95, "seconds_per_request": 0.3}]
    >>> decide(rows, min_quality=0.9, requests_per_day=100_000, latency_budget_s=0,
    ...        metric="field_accuracy")["case"]
    'distill_pays'

Whether the student then ships is the build's one decision (pipeline.measure.decision);
`with_decision` ends the verdict with it.
"""

from __future__ import annotations

from typing import Any

from pipeline.measure.roles import BASE_ROLES, Role

SECONDS_PER_DAY = 86_400


def seconds_per_request(row: dict[str, Any]) -> float:
    """Wall time one request costs on this machine: time to first token + decoding the rest."""
    decode = row.get("decode_tok_s") or 0.0
    rest = max(row.get("mean_completion_tokens", 0.0) - 1, 0.0) / decode if decode else 0.0
    return float(row.get("ttft_mean_s", 0.0) + rest)


def attribution(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """The change of the task's primary metric at each step: base fp -> distilled fp (same runtime),
    distilled fp32 on torch -> its F16 GGUF export, and -> the quantized artifact.

    Keeps a quantization or export loss from being mistaken for a distillation gain (or
    hidden by one).
    """
    by_role = {r["role"]: r for r in rows}
    base = by_role.get(Role.BASE_FP) or by_role.get(Role.BASE)
    pairs = [("quantize base", by_role.get(Role.BASE_FP), by_role.get(Role.BASE)),
             ("distill", base, by_role.get(Role.DISTILLED_FP)),
             ("export", by_role.get(Role.DISTILLED_TORCH), by_role.get(Role.DISTILLED_FP)),
             ("quantize", by_role.get(Role.DISTILLED_FP), by_role.get(Role.DISTILLED))]
    return [{"step": step, "from": a["label"], "to": b["label"], "from_role": a["role"],
             "to_role": b["role"], "delta": round(b[metric] - a[metric], 4)}
            for step, a, b in pairs if a is not None and b is not None]


def decide(rows: list[dict[str, Any]], min_quality: float | None, requests_per_day: int,
           latency_budget_s: float, metric: str) -> dict[str, Any]:
    """One of three cases, with the numbers behind it (see module docstring). `min_quality`
    is the bar the small model used directly is held to (None: none known)."""
    by_role = {r["role"]: r for r in rows}
    for r in rows:
        r.setdefault("seconds_per_request", seconds_per_request(r))
    base = max((by_role[k] for k in BASE_ROLES if k in by_role),
               key=lambda r: r[metric], default=None)
    teacher, student = by_role.get(Role.TEACHER), by_role.get(Role.DISTILLED)
    numbers: dict[str, Any] = {"quality_bar": min_quality, "requests_per_day": requests_per_day,
                               "latency_budget_s": latency_budget_s or None}
    if base is not None and min_quality is not None and base[metric] >= min_quality:
        return {"case": "skip_distillation", **numbers, "best_base": base["label"],
                "text": f"The small model alone already meets the bar ({base['label']}: "
                        f"{metric} {base[metric]:.3f} ≥ {min_quality}) — skip distillation."}
    if teacher is None or student is None or base is None:
        return {"case": "incomplete", **numbers,
                "text": "Teacher, base or student was not benchmarked: no verdict."}
    t_cost, s_cost = teacher["seconds_per_request"], student["seconds_per_request"]
    capacity = SECONDS_PER_DAY / t_cost if t_cost > 0 else float("inf")
    numbers.update(teacher_requests_per_day=round(capacity), teacher_s_per_request=round(t_cost, 3),
                   student_s_per_request=round(s_cost, 3))
    within_budget = not latency_budget_s or t_cost <= latency_budget_s
    if requests_per_day <= capacity and within_budget:
        return {"case": "run_teacher", **numbers,
                "text": f"The teacher is affordable at your stated scale: {t_cost:.2f} s/request "
                        f"serves {capacity:,.0f} requests/day on this machine ≥ {requests_per_day:,}"
                        " — run the teacher."}
    gap = teacher[metric] - base[metric]
    recovered = (student[metric] - base[metric]) / gap if gap > 0 else 1.0
    speedup = t_cost / s_cost if s_cost > 0 else float("inf")
    numbers.update(gap_recovered=round(recovered, 4), cost_ratio=round(speedup, 2))
    # whether the student is good enough to ship is the decision's (with_decision), not a
    # second judgement on the point value here
    return {"case": "distill_pays", **numbers,
            "text": f"Distillation recovers {recovered * 100:.0f}% of the base→teacher gap "
                    f"({base[metric]:.3f} → {student[metric]:.3f}, teacher {teacher[metric]:.3f}) at "
                    f"{speedup:.1f}× lower cost per request."}



def with_decision(verdict: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    """The verdict ends with the build's one decision (pipeline.measure.decision): a
    verdict never says "ship" on a build that ships nothing, and names the check that
    stopped it."""
    if verdict["case"] == "distill_pays":
        verdict["case"] = "ship_student" if decision["ship"] else "student_not_shipped"
    verdict["text"] = f"{verdict['text']} {decision['sentence']}"
    return verdict
