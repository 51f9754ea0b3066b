"""The build's one decision (issue 31), on constructed paired samples: clear pass, clear fail,
undecided → widened → decided, still undecided → the documented default (ship with a
warning; refuse when strict); the verdict, exit code and bundle agree on every branch; a
constrained target's quantization checks read grammar-decoded rows."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.measure.decision import (
    EXIT_NO_SHIP,
    EXIT_SHIP,
    Evidence,
    Limits,
    decide_build,
    decide_ship,
    judge,
    tiers_of,
)
from pipeline.measure.verdict import decide, with_decision
from pipeline.tasks import make_task
from pipeline.tasks.base import TaskSpec

LABELS = make_task(TaskSpec(name="t", kind="label", labels=("a", "b"), primary="accuracy"))


def _wrong(ref: str) -> str:
    return "b" if ref == "a" else "a"


def _evidence(hand: int, hand_right: int, generated: int = 0, generated_right: int = 0,
              **roles: Any) -> Evidence:
    """`hand` prompts of the primary set (`hand_right` of them answered right by the shipped
    row), then `generated` more; other roles' answers as lists, or "same" (the shipped row's)."""
    eval_rows = [{"reference": "a" if i % 2 else "b", "set": "hand"} for i in range(hand)]
    eval_rows += [{"reference": "a", "set": "generated"} for _ in range(generated)]
    right = [i < hand_right for i in range(hand)] + [i < generated_right for i in range(generated)]
    shipped = [e["reference"] if ok else _wrong(e["reference"])
               for e, ok in zip(eval_rows, right, strict=True)]
    answers = []
    for i, e in enumerate(eval_rows):
        row = {"distilled": shipped[i], "reference": e["reference"]}
        for role, values in roles.items():
            row[role] = shipped[i] if values == "same" else values[i]
        answers.append(row)
    return Evidence(task=LABELS, metric="accuracy", answers=answers,
                    refs=[e["reference"] for e in eval_rows], tiers=tiers_of(eval_rows, "hand"))


ROWS = [{"role": "teacher", "label": "teacher", "accuracy": 0.9},
        {"role": "distilled_torch", "label": "distilled fp32 (torch)", "accuracy": 0.9},
        {"role": "distilled_fp", "label": "distilled F16 + grammar", "accuracy": 0.9},
        {"role": "distilled", "label": "distilled Q4_K_M + grammar", "accuracy": 0.9,
         "kl_vs_reference": 0.004, "top1_agreement": 0.99}]


@pytest.mark.parametrize(("ci", "limit", "higher", "outcome"), [
    ((0.93, 0.97), 0.9, True, "pass"), ((0.80, 0.89), 0.9, True, "fail"),
    ((0.88, 0.95), 0.9, True, "undecided"), ((0.9, 0.95), 0.9, True, "pass"),
    ((0.001, 0.004), 0.005, False, "pass"), ((0.006, 0.03), 0.005, False, "fail"),
    ((-0.01, 0.03), 0.02, False, "undecided"),
    ((0.0, 0.9 - 0.88), 0.02, False, "pass"),  # 0.020000000000000018 is "at most 2 points"
])
def test_judge_by_the_interval(ci: tuple[float, float], limit: float, higher: bool,
                               outcome: str) -> None:
    assert judge(ci, limit, higher_is_better=higher) == outcome


def test_a_clear_pass_ships_on_the_primary_set() -> None:
    ev = _evidence(200, 196)  # 0.98, interval about 0.96-1.0
    d = decide_build(ev, Limits(goal=0.9), ROWS, "distilled_torch")
    goal = d["checks"][0]
    assert (goal["check"], goal["outcome"], goal["prompts"], goal["on"]) == (
        "goal", "pass", 200, "the hand set")
    assert goal["ci"][0] > 0.9 and len(goal["tried"]) == 1
    assert d["ship"] and d["exit_code"] == EXIT_SHIP and d["sentence"] == "Shipped: every check passed."


def test_a_clear_fail_refuses_and_names_the_check() -> None:
    ev = _evidence(200, 150, 100, 100)  # 0.75 on the primary set: its interval is below 0.9
    d = decide_build(ev, Limits(goal=0.9), ROWS, "distilled_torch")
    assert d["checks"][0]["outcome"] == "fail" and d["checks"][0]["ci"][1] < 0.9
    assert len(d["checks"][0]["tried"]) == 1  # a clear failure is not widened
    assert not d["ship"] and d["exit_code"] == EXIT_NO_SHIP
    assert d["sentence"].startswith("Not shipped: distilled Q4_K_M + grammar accuracy 0.750")
    assert "the [goal] quality bar 0.9" in d["sentence"]


def test_undecided_is_widened_to_every_eval_set_and_then_decided() -> None:
    ev = _evidence(40, 37, 300, 297)  # 0.925 on 40 prompts holds 0.9; 334/340 = 0.982 does not
    d = decide_build(ev, Limits(goal=0.9), ROWS, "distilled_torch")
    goal = d["checks"][0]
    assert [t["outcome"] for t in goal["tried"]] == ["undecided", "pass"]
    assert [t["prompts"] for t in goal["tried"]] == [40, 340]
    assert goal["on"] == "generated + hand sets" and goal["outcome"] == "pass" and d["ship"]


@pytest.mark.parametrize("strict", [False, True])
def test_still_undecided_follows_the_documented_default(strict: bool) -> None:
    ev = _evidence(40, 36, 10, 9)  # 0.9 on 40 and on 50 prompts: the bar sits inside
    d = decide_build(ev, Limits(goal=0.9, strict=strict), ROWS, "distilled_torch")
    goal = d["checks"][0]
    assert goal["outcome"] == "undecided" and len(goal["tried"]) == 2 and d["outcome"] == "undecided"
    assert d["ship"] is not strict
    assert d["exit_code"] == (EXIT_NO_SHIP if strict else EXIT_SHIP)
    assert d["sentence"].startswith("Not shipped ([gate] strict = true)" if strict
                                    else "Shipped with a warning: undecided")
    # 0.9 is exactly on the bar: no eval size decides it, and no prompt count is printed
    assert "too close to the limit for any practical eval" in d["sentence"]
    assert "prompts would decide it" not in d["sentence"]


def test_a_suggested_prompt_count_is_one_an_eval_could_supply() -> None:
    ev = _evidence(80, 75)  # 0.9375 vs 0.9 on 80 prompts: a few hundred would decide it
    d = decide_build(ev, Limits(goal=0.9), ROWS, "distilled_torch")
    assert "prompts would decide it" in d["sentence"]
    more = int(d["sentence"].split("about ")[1].split(" prompts")[0])
    assert 80 < more <= 800


@pytest.mark.parametrize(("hand_right", "gen_right", "strict"), [
    (196, 100, False), (150, 100, False), (37, 300, False), (36, 9, False), (36, 9, True)])
def test_verdict_exit_code_and_bundle_agree_on_every_branch(hand_right: int, gen_right: int,
                                                            strict: bool) -> None:
    hand = 200 if hand_right > 100 else 40
    generated = 300 if gen_right == 300 else (10 if gen_right == 9 else 100)
    ev = _evidence(hand, hand_right, generated, gen_right)
    d = decide_build(ev, Limits(goal=0.9, strict=strict), ROWS, "distilled_torch")
    rows = [{"role": "teacher", "label": "teacher", "accuracy": 0.95, "ttft_mean_s": 2.0},
            {"role": "base", "label": "base", "accuracy": 0.1, "ttft_mean_s": 0.1},
            {"role": "distilled", "label": "distilled", "accuracy": 0.9, "ttft_mean_s": 0.1}]
    verdict = with_decision(decide(rows, 0.9, 10**6, 0, "accuracy"), d)
    assert "ship it" not in verdict["text"]
    assert verdict["text"].endswith(d["sentence"])
    assert (verdict["case"] == "ship_student") == d["ship"] == (d["exit_code"] == 0)
    assert ("Not shipped" in verdict["text"]) == (d["exit_code"] == 3)


def test_the_relative_bar_holds_the_student_to_its_teacher() -> None:
    """No [goal] min_quality: the bank-intent case — the student scoring exactly its
    teacher's 0.892 ships; a student clearly worse than the teacher does not."""
    ev = _evidence(120, 107, teacher="same")
    d = decide_build(ev, Limits(max_teacher_gap=0.03), ROWS, "distilled_torch")
    check = d["checks"][0]
    assert check["check"] == "vs_teacher" and check["value"] == 0 and check["outcome"] == "pass"
    assert "relative to the teacher" in check["text"] and d["ship"]
    worse = _evidence(120, 80, teacher=list(ev.refs))  # the teacher right everywhere: 0.667 vs 1.0
    d = decide_build(worse, Limits(max_teacher_gap=0.03), ROWS, "distilled_torch")
    assert d["checks"][0]["outcome"] == "fail" and not d["ship"]


def test_a_constrained_target_is_held_to_its_f16_export_under_the_same_grammar() -> None:
    """The quantization check compares the shipped row with the F16 export under the same
    grammar (identical answers: no loss); held to a reference decoded another way (the free
    fp32 student), the same row would be charged with what the decoding changed."""
    refs = [_evidence(200, 200).refs][0]  # the free fp32 student right everywhere
    ev = _evidence(200, 180, distilled_fp="same", distilled_torch=refs)
    limits = Limits(max_quant_loss=0.02, max_kl=0.02, min_greedy_agreement=0.7)
    d = decide_build(ev, limits, ROWS, "distilled_fp")
    by = {c["check"]: c for c in d["checks"]}
    assert by["max_quant_loss"]["value"] == 0 and by["max_quant_loss"]["outcome"] == "pass"
    assert "distilled F16 + grammar" in by["max_quant_loss"]["text"]
    assert by["min_greedy_agreement"]["value"] == 1.0 and d["ship"]
    free = decide_build(ev, limits, ROWS, "distilled_torch")  # a reference decoded otherwise
    assert {c["check"]: c["outcome"] for c in free["checks"]}["max_quant_loss"] == "fail"


def test_kl_is_primary_and_an_undecided_metric_loss_defers_to_it() -> None:
    fp = ["a" if i % 2 else "b" for i in range(60)]  # the reference right everywhere
    ev = _evidence(60, 59, distilled_fp=fp)  # one prompt lost: loss 0.017, interval holds 0.02
    limits = Limits(max_quant_loss=0.02, max_kl=0.02)
    d = decide_build(ev, limits, ROWS, "distilled_fp")
    loss = next(c for c in d["checks"] if c["check"] == "max_quant_loss")
    assert loss["outcome"] == "pass" and loss["deferred"] and "KL check (primary) passed" in loss["text"]
    assert d["outcome"] == "pass" and d["ship"]
    bad_kl = [*ROWS[:3], {**ROWS[3], "kl_vs_reference": 0.5}]
    d = decide_build(ev, limits, bad_kl, "distilled_fp")
    assert [c["outcome"] for c in d["checks"]] == ["fail", "undecided"] and not d["ship"]


def test_an_unmeasured_kl_fails_and_no_checks_is_not_a_pass() -> None:
    ev = _evidence(20, 20)
    unmeasured = [*ROWS[:3], {k: v for k, v in ROWS[3].items() if k != "kl_vs_reference"}]
    d = decide_build(ev, Limits(max_kl=1.0), unmeasured, "distilled_torch")
    assert not d["ship"] and "not measured" in d["sentence"]
    empty = decide_ship([], strict=False)
    assert not empty["ship"] and empty["exit_code"] == EXIT_NO_SHIP
    assert empty["sentence"].startswith("Not shipped: no check judged it")


def test_an_empty_gate_is_refused_before_any_work(tmp_path: Any) -> None:
    """require_goal = false and a target without limits: nothing would judge the build, so it
    is a one-line error (exit 2) before the build folder is touched."""
    from pipeline.config import load_config
    from pipeline.errors import UserError
    from pipeline.runner import run_plan
    from pipeline.targets import load_target

    cfg = tmp_path / "c.toml"
    cfg.write_text("[gate]\nrequire_goal = false\n")
    bare = load_target("cpu-int4").model_copy(update={k: None for k in (
        "min_quality", "max_quant_loss", "max_kl", "min_greedy_agreement")})
    with pytest.raises(UserError, match="nothing would judge this build"):
        run_plan(load_config(cfg), bare, tmp_path / "build")
    assert not (tmp_path / "build").exists()
