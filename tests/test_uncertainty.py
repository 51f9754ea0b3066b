"""Intervals on quality figures: bootstrap vs hand-computed values, paired differences, and
the verdict's margin (issue 18)."""

from __future__ import annotations

import math

import pytest

from pipeline.measure.uncertainty import (
    add_intervals,
    distinguishable,
    interval,
    metric_interval,
    needed_prompts,
    paired_interval,
    paired_metric_interval,
)
from pipeline.tasks import make_task
from pipeline.tasks.base import TaskSpec

LABELS = make_task(TaskSpec(name="t", kind="label", labels=("a", "b"), primary="accuracy"))


def test_interval_matches_the_normal_approximation_by_hand() -> None:
    # 45 of 60 right: p = 0.75, se = sqrt(0.75 * 0.25 / 60) = 0.0559, ±1.96 se = ±0.1096
    lo, hi = interval([1.0] * 45 + [0.0] * 15)
    assert lo == pytest.approx(0.75 - 0.1096, abs=0.02) and hi == pytest.approx(0.75 + 0.1096, abs=0.02)
    assert interval([0.8] * 30) == (0.8, 0.8)  # no spread, no uncertainty
    assert all(math.isnan(v) for v in interval([]))


def test_paired_differences_cancel_what_both_rows_share() -> None:
    a = [1.0] * 30 + [0.0] * 30
    assert paired_interval(a, a) == (0.0, 0.0) and not distinguishable((0.0, 0.0))
    b = [1.0] * 30 + [1.0] * 3 + [0.0] * 27  # b adds 3 right answers, loses none
    lo, hi = paired_interval(a, b)
    assert 0 <= lo < 0.05 < hi <= 0.12  # 3/60 = 0.05; never negative: b never does worse
    # unpaired, the same two rows' intervals overlap almost entirely
    assert interval(a)[1] > interval(b)[0]


def test_metric_interval_uses_the_tasks_own_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.measure import uncertainty

    monkeypatch.setattr(uncertainty, "RESAMPLES_SLOW", 60)  # the mechanics, not the precision
    refs = ["a"] * 10 + ["b"] * 10
    preds = ["a"] * 10 + ["b"] * 5 + ["a"] * 5
    lo, hi = metric_interval(LABELS, "accuracy", preds, refs)  # a per-prompt mean: fast path
    assert lo < 0.75 < hi
    lo_f1, hi_f1 = metric_interval(LABELS, "macro_f1", preds, refs)  # recomputed per resample
    f1 = LABELS.evaluate(preds, refs)["macro_f1"]
    assert lo_f1 < f1 < hi_f1
    assert paired_metric_interval(LABELS, "macro_f1", preds, preds, refs) == (0.0, 0.0)


def test_needed_prompts_by_hand() -> None:
    # half-width 0.1 at n = 60, gap to the bar 0.05: (0.1 / 0.05)^2 * 60 = 240
    assert needed_prompts(0.85, (0.75, 0.95), bar=0.9, n=60) == 240
    assert needed_prompts(0.9, (0.8, 1.0), bar=0.9, n=60) is None
    assert needed_prompts(0.5, (0.45, 0.55), bar=0.9, n=60) == 60  # already decided


def test_rows_and_steps_get_intervals_on_the_primary_set() -> None:
    eval_rows = [{"id": str(i), "reference": "a" if i % 2 else "b", "set": "hand"} for i in range(40)]
    eval_rows += [{"id": f"g{i}", "reference": "a", "set": "generated"} for i in range(10)]
    distilled = [e["reference"] if i % 10 else "b" if e["reference"] == "a" else "a"
                 for i, e in enumerate(eval_rows)]  # 36 of the 40 hand-written right: 0.9
    answers = [{"id": e["id"], "base": "a", "distilled": d} for e, d in zip(eval_rows, distilled,
                                                                            strict=True)]
    rows = [{"role": "base", "label": "base", "accuracy": 0.5, "eval_set": "hand"},
            {"role": "distilled", "label": "distilled", "accuracy": 0.9, "eval_set": "hand"}]
    steps = [{"step": "distill", "from_role": "base", "to_role": "distilled", "delta": 0.4}]
    add_intervals(LABELS, "accuracy", rows, answers, eval_rows, steps)
    assert rows[1]["ci"][0] < 0.9 <= rows[1]["ci"][1]  # the 40 hand-written prompts only
    assert steps[0]["distinguishable"] and steps[0]["ci"][0] > 0


def test_exact_and_agreement_figures_get_intervals_on_their_own_prompts() -> None:
    """exact: the primary eval set only; agreement with the teacher: every prompt where the
    teacher's answer is valid; same answer as fp32: every prompt — each interval is the
    bootstrap of the per-prompt values those figures average."""
    from pipeline.config import load_config
    from pipeline.measure.uncertainty import add_other_intervals
    from pipeline.report.render import render_markdown

    task = make_task(load_config(None).task.spec)  # the default json task: exact != primary
    right = '{"name": "Ann Lee", "item": "lamp", "quantity": 2, "city": "Oslo", "date": "2026-02-03"}'
    wrong = '{"name": "Ann", "item": "lamp", "quantity": 3, "city": "Oslo", "date": "2026-02-03"}'
    ref = task.parse(right)[0]
    eval_rows = [{"id": str(i), "set": "hand" if i < 8 else "gen", "reference": ref}
                 for i in range(12)]
    hits = [1, 1, 1, 0, 1, 0, 1, 1, 0, 0, 0, 0]  # the student's exact matches, per prompt
    answers = [{"id": str(i), "teacher": right if i != 2 else "not json",
                "distilled": right if hit else wrong, "distilled_torch": right}
               for i, hit in enumerate(hits)]
    rows = [{"role": "distilled", "label": "distilled Q4_K_M", "eval_set": "hand", "exact": 0.75,
             "teacher_agreement": 0.5, "greedy_agreement": 5 / 12, "field_accuracy": 0.9}]
    add_other_intervals(task, rows, answers, eval_rows)
    assert rows[0]["exact_ci"] == list(interval(hits[:8]))  # the 8 "hand" prompts
    agreement = [task.score(task.parse(a["distilled"])[0], ref)["field_accuracy"]
                 for a in answers if a["teacher"] != "not json"]  # 11 prompts
    assert rows[0]["teacher_agreement_ci"] == list(interval(agreement))
    assert rows[0]["greedy_agreement_ci"] == list(interval(hits))  # all 12 prompts
    report = {"target": "t", "bench": {"rows": rows},
              "task": {"name": "t", "kind": "json", "metric": "field_accuracy", "columns": []}}
    lo, hi = rows[0]["exact_ci"]
    assert f"distilled Q4_K_M: exact 0.750 ({lo:.3f}–{hi:.3f});" in render_markdown(report)


def test_the_median_seed_ships_and_the_spread_is_max_minus_min() -> None:
    from pipeline.measure.seeds import seed_line, seed_table

    runs = [{"seed": 0, "value": 0.90}, {"seed": 1, "value": 0.95}, {"seed": 2, "value": 0.80}]
    table = seed_table(runs, "field_accuracy")
    assert table["shipped"] == 0 and table["spread"] == 0.15 and (table["min"], table["max"]) == (0.8, 0.95)
    # sample sd by hand: mean 0.8833, deviations 0.0167, 0.0667, -0.0833 -> sqrt(0.011667/2)
    assert table["sd"] == pytest.approx(0.0764, abs=1e-4)
    # an even count ships the lower of the middle two; equal values, the lower seed
    assert seed_table(runs + [{"seed": 3, "value": 0.92}], "f")["shipped"] == 0
    assert seed_table([{"seed": 5, "value": 0.9}, {"seed": 4, "value": 0.9}, {"seed": 6, "value": 0.9}],
                      "f")["shipped"] == 5
    line = seed_line(table)
    assert "seed 0 0.900, seed 1 0.950, seed 2 0.800" in line and "Shipped: seed 0, the median" in line
