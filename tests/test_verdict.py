"""The verdict's three cases and the attribution chain, on fixture numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.measure.verdict import attribution, decide, seconds_per_request


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
    assert verdict["case"] == "ship_student"


def test_ship_the_student_at_large_scale() -> None:
    verdict = decide(_rows(), min_quality=0.85, requests_per_day=10**6, latency_budget_s=0,
                     metric="field_accuracy")
    assert verdict["case"] == "ship_student"
    assert verdict["gap_recovered"] == round((0.9 - 0.1) / (0.95 - 0.1), 4)
    student_cost = 0.07 + 40 / 130
    assert verdict["cost_ratio"] == round(2.2 / student_cost, 2)


def test_student_below_bar_is_not_shipped() -> None:
    verdict = decide(_rows(student_acc=0.5), min_quality=0.9, requests_per_day=10**6,
                     latency_budget_s=0,
                     metric="field_accuracy")
    assert verdict["case"] == "student_below_bar" and "not ready" in verdict["text"]


def test_attribution_separates_distillation_from_quantization() -> None:
    steps = {s["step"]: s["delta"] for s in attribution(_rows(), "field_accuracy")}
    assert steps == {"distill": round(0.92 - 0.1, 4), "quantize": -0.02}


def test_attribution_export_step_and_gate_vs_fp32() -> None:
    """With the torch fp32 row, the export step gets its own delta and the gate's loss is
    measured against the fp32 student, not its F16 export."""
    from pipeline.measure.verdict import quality_gate

    rows = [*_rows(), _row("distilled_torch", 0.93, 0.3, 14.0)]
    steps = {s["step"]: s["delta"] for s in attribution(rows, "field_accuracy")}
    assert steps == {"distill": round(0.92 - 0.1, 4), "export": -0.01, "quantize": -0.02}
    gate = quality_gate(rows, min_quality=None, max_quant_loss=0.025, metric="field_accuracy")
    assert gate["checks"][0]["value"] == 0.03 and not gate["passed"]


def test_parity_gate_names_the_artifact_and_numbers() -> None:
    from pipeline.measure.verdict import quality_gate

    rows = [*_rows(), _row("distilled_torch", 0.93, 0.3, 14.0)]
    shipped = next(r for r in rows if r["role"] == "distilled")
    shipped |= {"kl_vs_reference": 0.05, "greedy_agreement": 0.8}
    ok = quality_gate(rows, None, None, max_kl=0.1, min_greedy_agreement=0.75, metric="field_accuracy")
    assert ok["passed"] and [c["check"] for c in ok["checks"]] == ["max_kl", "min_greedy_agreement"]
    bad = quality_gate(rows, None, None, max_kl=0.01, min_greedy_agreement=0.9, metric="field_accuracy")
    assert not bad["passed"] and not any(c["passed"] for c in bad["checks"])
    assert bad["checks"][0]["text"] == "distilled mean KL vs the fp32 student: 0.05 (maximum 0.01)"
    del shipped["kl_vs_reference"]  # not measured: the check cannot pass
    missing = quality_gate(rows, None, None, max_kl=1.0, metric="field_accuracy")
    assert not missing["passed"] and "not measured" in missing["checks"][0]["text"]


def test_a_constrained_artifact_is_held_to_the_fp32_student_by_its_free_twin() -> None:
    """Under the grammar the shipped answers differ from the free fp32 student's wherever a
    copy was fixed: the quantization checks (metric loss, greedy agreement) read the free
    twin; the quality bar reads what ships."""
    from pipeline.measure.verdict import quality_gate

    rows = [*_rows(), _row("distilled_torch", 0.93, 0.3, 14.0)]
    shipped = next(r for r in rows if r["role"] == "distilled")
    shipped |= {"field_accuracy": 0.95, "kl_vs_reference": 0.01, "greedy_agreement": 0.6}
    free = {**shipped, "role": "distilled_free", "label": "distilled, free decoding",
            "field_accuracy": 0.90, "greedy_agreement": 0.8}
    gate = quality_gate([*rows, free], 0.94, 0.02, max_kl=0.02, min_greedy_agreement=0.7,
                        metric="field_accuracy")
    assert [c["check"] for c in gate["checks"]] == ["min_quality", "max_quant_loss", "max_kl",
                                                    "min_greedy_agreement"]
    assert gate["checks"][0]["value"] == 0.95 and gate["checks"][0]["passed"]
    assert gate["checks"][1]["value"] == 0.03 and not gate["checks"][1]["passed"]
    assert gate["checks"][3]["text"] == (
        "distilled, free decoding share of answers identical to the fp32 student's: 0.8 "
        "(minimum 0.7)")
    assert not quality_gate(rows, None, None, min_greedy_agreement=0.7,
                            metric="field_accuracy")["passed"]  # no twin: its own answers


def test_greedy_agreement_counts_identical_answers() -> None:
    from pipeline.measure.quality import greedy_agreement

    answers = [{"distilled_torch": "a", "distilled": "a", "distilled_fp": "a", "base": "b"},
               {"distilled_torch": "c", "distilled": "d", "distilled_fp": "c", "base": "e"}]
    assert greedy_agreement(answers, "distilled_torch") == {"base": 0.0, "distilled_fp": 1.0,
                                                           "distilled": 0.5}


def test_quant_loss_exactly_at_the_limit_passes() -> None:
    """0.900 - 0.880 is 0.020000000000000018 in floats: "at most 2 points" must still hold."""
    from pipeline.measure.verdict import quality_gate

    rows = [_row("distilled_torch", 0.9, 0.3, 14.0), _row("distilled", 0.88, 0.1, 80.0)]
    gate = quality_gate(rows, min_quality=None, max_quant_loss=0.02, metric="field_accuracy")
    assert gate["passed"] and gate["checks"][0]["value"] == 0.02


@pytest.mark.parametrize("student_acc", [0.5, 0.89, 0.9, 0.95])
def test_the_gate_fails_exactly_when_the_verdict_says_not_ready(student_acc: float) -> None:
    """[gate] require_goal (the default): the exit status (the gate) and the verdict agree."""
    from pipeline.measure.verdict import quality_gate

    rows = _rows(student_acc=student_acc)
    verdict = decide(rows, min_quality=0.9, requests_per_day=10**6, latency_budget_s=0,
                     metric="field_accuracy")
    gate = quality_gate(rows, None, None, metric="field_accuracy", goal=0.9)
    assert gate["passed"] == (verdict["case"] == "ship_student")
    assert (verdict["case"] == "student_below_bar") == (not gate["passed"])
    assert "[gate] require_goal = false" in gate["checks"][0]["text"]
    assert quality_gate(rows, None, None, metric="field_accuracy")["passed"]  # require_goal = false


def test_require_goal_reaches_the_report_settings(tmp_path: Any) -> None:
    from pipeline.config import load_config
    from pipeline.stages.report import ReportStage
    from pipeline.targets import load_target

    target = load_target("cpu-int4")
    assert ReportStage().settings(load_config(None), target).gate_goal == 0.9
    text = (Path(__file__).parents[1] / "pipeline" / "default.toml").read_text()
    off = tmp_path / "c.toml"
    off.write_text(text.replace("require_goal = true", "require_goal = false"))
    assert ReportStage().settings(load_config(off), target).gate_goal is None
