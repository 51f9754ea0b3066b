"""The limits a build is held to, as keyed settings: written once for every step that decides.

The report decides ship / no ship (pipeline.measure.decision); the bench's encoding search
decides the same way for each candidate encoding before it picks one. Both read their
limits from here, so the two can never judge by different rules.

Example:
    >>> from pipeline.config import load_config
    >>> from pipeline.targets import load_target
    >>> gate = GateSettings(**gate_settings(load_config(None), load_target("cpu-int4")))
    >>> limits(gate).max_kl
    0.02
"""

from __future__ import annotations

from typing import Any

from pipeline.config import BuildConfig
from pipeline.constrain import shipped_grammar
from pipeline.measure.decision import Evidence, Limits, decide_build, tiers_of
from pipeline.measure.roles import Role
from pipeline.stage import Settings
from pipeline.targets import Target
from pipeline.tasks.base import Task
from pipeline.tasks.inputs import EvalRow


class GateSettings(Settings):
    """[goal], [gate] and the target's limits, as a deciding step's settings."""

    gate_min_quality: float | None
    gate_max_quant_loss: float | None
    gate_max_kl: float | None
    gate_min_greedy_agreement: float | None
    gate_goal: float | None = None  # the [goal] bar, unless [gate] require_goal = false
    # no [goal] min_quality: the shipped row may be at most this far below the teacher
    # (None: [gate] require_goal = false, no bar at all)
    max_teacher_gap: float | None = None
    strict: bool = False  # [gate] strict: an undecided check refuses the build
    constrained: bool = False  # the shipped row decodes under the task grammar


def gate_settings(config: BuildConfig, target: Target) -> dict[str, Any]:
    """GateSettings' fields for this build."""
    task = config.task
    return {"gate_min_quality": target.min_quality, "gate_max_quant_loss": target.max_quant_loss,
            "gate_max_kl": target.max_kl,
            "gate_min_greedy_agreement": target.min_greedy_agreement,
            "gate_goal": config.goal.min_quality if config.gate.require_goal else None,
            "max_teacher_gap": (config.goal.max_teacher_gap if config.gate.require_goal
                                and config.goal.min_quality is None else None),
            "strict": config.gate.strict,
            "constrained": bool(shipped_grammar(task.spec, task.date_fields, target.constrained)[0])}


def limits(s: GateSettings) -> Limits:
    """The decision's limits from a deciding step's settings."""
    return Limits(goal=s.gate_goal, max_teacher_gap=s.max_teacher_gap,
                  min_quality=s.gate_min_quality, max_quant_loss=s.gate_max_quant_loss,
                  max_kl=s.gate_max_kl, min_greedy_agreement=s.gate_min_greedy_agreement,
                  strict=s.strict)


def reference_role(s: GateSettings, roles: set[str]) -> Role:
    """The row the quantization checks hold the shipped one to: the unquantized export decoded
    the same way on a constrained target (or without a torch row), else the fp32 student."""
    return (Role.DISTILLED_FP if s.constrained or Role.DISTILLED_TORCH not in roles
            else Role.DISTILLED_TORCH)


def ship_decision(s: GateSettings, task: Task, rows: list[dict[str, Any]],
                  answers: list[dict[str, Any]], eval_rows: list[EvalRow]) -> dict[str, Any]:
    """The one ship / no-ship decision (pipeline.measure.decision) on bench rows and their
    answers per eval prompt (role -> text). A constrained artifact's quantization checks hold
    it to its unquantized export under the same grammar."""
    primary = next((r["eval_set"] for r in rows if r.get("eval_set")), None)
    evidence = Evidence(task=task, metric=task.spec.primary, answers=answers,
                        refs=[e["reference"] for e in eval_rows], tiers=tiers_of(eval_rows, primary))
    return decide_build(evidence, limits(s), rows, reference_role(s, {r["role"] for r in rows}))
