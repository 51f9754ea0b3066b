"""The verdict's three cases and the attribution chain, on fixture numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.measure.verdict import attribution, decide, seconds_per_request, with_decision


def _row(role: str, acc: float, ttft: float, tok_s: float, label: str | None = None) -> dict[str, Any]:
    return {"role": role, "label": label or role, "field_accuracy": acc, "ttft_mean_s": ttft,
            "decode_tok_s": tok_s, "mean_completion_tokens": 41.0}


def _rows(base_acc: float = 0.1, student_acc: float = 0.9) -> list[dict[str, Any]]:
    return [_row("teacher", 0.95, 0.6, 25.0), _row("base", base_acc, 0.07, 130.0),
            _row("base_fewshot", base_acc / 2, 0.1, 100.0),
            _row("distilled_fp", student_acc + 0.02, 0.09, 80.0),
            _row("distilled", student_acc, 0.07, 130.0)]


def test_seconds_per_request() -> None:
    assert seconds_per_request(_row("x", 0, 0.5, 20.0)) == 0.5 + 40 / 20


def test_small_model_already_good_enough() -> None:
    verdict = decide(_rows(base_acc=0.93), min_quality=0.9, requests_per_day=10**6, latency_budget_s=0,
                     metric="field_accuracy")
    assert verdict["case"] == "skip_distillation"
    assert "skip distillation" in verdict["text"]


def test_teacher_affordable_at_small_scale() -> None:
    # teacher: 0.6 + 40/25 = 2.2 s/request -> ~39,000 requests/day on this machine
    verdict = decide(_rows(), min_quality=0.9, requests_per_day=1000, latency_budget_s=0,
                     metric="field_accuracy")
    assert verdict["case"] == "run_teacher"
    assert verdict["teacher_requests_per_day"] == round(86400 / 2.2)


def test_latency_budget_rules_out_the_teacher() -> None:
    verdict = decide(_rows(), min_quality=0.9, requests_per_day=1000, latency_budget_s=1.0,
                     metric="field_accuracy")
    assert verdict["case"] == "distill_pays"


def test_ship_the_student_at_large_scale() -> None:
    verdict = decide(_rows(), min_quality=0.85, requests_per_day=10**6, latency_budget_s=0,
                     metric="field_accuracy")
    assert verdict["case"] == "distill_pays"
    assert verdict["gap_recovered"] == round((0.9 - 0.1) / (0.95 - 0.1), 4)
    student_cost = 0.07 + 40 / 130
    assert verdict["cost_ratio"] == round(2.2 / student_cost, 2)


def test_the_verdict_leaves_shipping_to_the_decision() -> None:
    """The verdict's economics never say "ship it": the decision's sentence ends it."""
    verdict = decide(_rows(student_acc=0.5), min_quality=0.9, requests_per_day=10**6,
                     latency_budget_s=0, metric="field_accuracy")
    assert verdict["case"] == "distill_pays" and "ship" not in verdict["text"]
    refused = {"ship": False, "sentence": "Not shipped: distilled field_accuracy 0.5 (...)."}
    final = with_decision(verdict, refused)
    assert final["case"] == "student_not_shipped" and final["text"].endswith(refused["sentence"])


def test_attribution_separates_distillation_from_quantization() -> None:
    steps = {s["step"]: s["delta"] for s in attribution(_rows(), "field_accuracy")}
    assert steps == {"distill": round(0.92 - 0.1, 4), "quantize": -0.02}


def test_attribution_export_step() -> None:
    """With the torch fp32 row, the export step gets its own delta."""
    rows = [*_rows(), _row("distilled_torch", 0.93, 0.3, 14.0)]
    steps = {s["step"]: s["delta"] for s in attribution(rows, "field_accuracy")}
    assert steps == {"distill": round(0.92 - 0.1, 4), "export": -0.01, "quantize": -0.02}


def test_greedy_agreement_counts_identical_answers() -> None:
    from pipeline.measure.quality import greedy_agreement

    answers = [{"distilled_torch": "a", "distilled": "a", "distilled_fp": "a", "base": "b"},
               {"distilled_torch": "c", "distilled": "d", "distilled_fp": "c", "base": "e"}]
    assert greedy_agreement(answers, "distilled_torch") == {"base": 0.0, "distilled_fp": 1.0,
                                                           "distilled": 0.5}


def test_require_goal_reaches_the_report_settings(tmp_path: Any) -> None:
    from pipeline.config import load_config
    from pipeline.stages.report import ReportStage
    from pipeline.targets import load_target

    target = load_target("cpu-int4")
    # the default task has no absolute bar: it is held to its teacher
    default = ReportStage().settings(load_config(None), target)
    assert default.gate_goal is None and default.max_teacher_gap == 0.03
    text = (Path(__file__).parents[1] / "pipeline" / "default.toml").read_text()
    off = tmp_path / "c.toml"
    off.write_text(text.replace("require_goal = true", "require_goal = false"))
    settings = ReportStage().settings(load_config(off), target)
    assert settings.gate_goal is None and settings.max_teacher_gap is None  # no bar at all
    own = tmp_path / "own.toml"  # a bar of the user's own: it is the gate's
    own.write_text(text.replace("[goal]\n", "[goal]\nmin_quality = 0.9\n"))
    settings = ReportStage().settings(load_config(own), target)
    assert settings.gate_goal == 0.9 and settings.max_teacher_gap is None
    assert settings.constrained  # cpu-int4, the default task's grammar
