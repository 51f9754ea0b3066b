"""One ship / no-ship decision: the verdict's last sentence, the report's decision section,
the exit code and the bundle all read what `decide_ship` returns, and nothing else.

Every check compares artifacts decoded the way they ship. A constrained target ships its
quantized file under the task's grammar, so its quantization checks hold it to its F16
export under the same grammar (whose own parity with the fp32 student is the F16 row's KL);
a free target is held to the fp32 student, decoded freely as it ships.

Each metric check is decided with its 95 % bootstrap interval (paired where it compares
two rows), not its point value: the interval clearly within the limit → pass, clearly past
it → fail, the limit inside → undecided. An undecided check is measured again on a wider
eval — the primary (hand-written) set, then every eval set the bench answered — and, if
still undecided, the build follows the documented default: ship with a warning, or refuse
under `[gate] strict = true`.

Quantization damage is judged first by what llama.cpp (`llama-perplexity --kl-divergence`)
and NNCF judge it by: the mean next-token KL divergence, teacher-forced on reference answers
(thousands of tokens, so it has little noise; its limits per bit width are in targets/).
The task-metric loss and the greedy-answer agreement are secondary: they fail a build only
when clearly past their limit; undecided, they defer to the KL check when it was measured
and passed — a few answers flipping on 65 prompts is not evidence against a file whose
next-token distribution matches its reference.

Without a quality bar of the user's own ([goal] min_quality), the bar is relative to the
teacher: the shipped artifact's paired difference to the teacher on the same prompts must
not be clearly below −[goal] max_teacher_gap.

Example:
    >>> from pipeline.measure.decision import judge
    >>> judge((0.93, 0.97), 0.9, higher_is_better=True)
    'pass'
    >>> judge((0.88, 0.95), 0.9, higher_is_better=True)
    'undecided'
    >>> judge((0.010, 0.030), 0.005, higher_is_better=False)
    'fail'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.errors import EXIT_NO_SHIP
from pipeline.measure.roles import Role
from pipeline.measure.uncertainty import interval, metric_interval, needed_prompts, paired_metric_interval

Outcome = Literal["pass", "fail", "undecided"]
EXIT_SHIP = 0
# A prompt count is suggested only when an eval that size could be written: beyond this
# multiple of the prompts measured the value sits too close to the limit for any eval.
MAX_SUGGESTED_FACTOR = 10


def judge(ci: tuple[float, float], limit: float, *, higher_is_better: bool) -> Outcome:
    """Where the interval lies against the limit (values rounded: 0.9 - 0.88 is 0.02)."""
    lo, hi = round(ci[0], 6), round(ci[1], 6)
    if higher_is_better:
        return "pass" if lo >= limit else "fail" if hi < limit else "undecided"
    return "pass" if hi <= limit else "fail" if lo > limit else "undecided"


@dataclass(frozen=True)
class Evidence:
    """What the checks are measured on: per eval prompt, every row's answer (`answers`, role
    → text) and the reference; `tiers` are the prompt subsets a check widens over, in order
    (name, prompt indices), the first being the primary eval set."""

    task: Any
    metric: str
    answers: list[dict[str, Any]]
    refs: list[Any]
    tiers: list[tuple[str, list[int]]]

    def preds(self, role: str, idx: list[int]) -> list[Any]:
        return [self.task.parse(self.answers[i][role])[0] for i in idx]

    def has(self, role: str) -> bool:
        return bool(self.answers) and role in self.answers[0]


@dataclass(frozen=True)
class Limits:
    """The limits a build is held to: the user's [goal] and [gate], the target's profile."""

    goal: float | None = None  # absolute bar on the primary metric ([goal] min_quality)
    max_teacher_gap: float | None = None  # without a goal: at most this far below the teacher
    min_quality: float | None = None  # the target's own bar
    max_quant_loss: float | None = None
    max_kl: float | None = None
    min_greedy_agreement: float | None = None
    strict: bool = False  # undecided after widening: refuse instead of shipping with a warning


def tiers_of(eval_rows: list[dict[str, Any]], primary: str | None) -> list[tuple[str, list[int]]]:
    """The primary eval set's prompts, then every set's (when there is more than one)."""
    every = list(range(len(eval_rows)))
    if primary is None:
        return [("the eval set", every)]
    first = [i for i, e in enumerate(eval_rows) if e.get("set") == primary]
    sets = sorted({str(e.get("set")) for e in eval_rows})
    tiers = [(f"the {primary} set", first)]
    if len(first) < len(every):
        tiers.append((" + ".join(sets) + " sets", every))
    return tiers


Measure = Callable[[list[int]], tuple[float, tuple[float, float]]]


def _widened(name: str, limit: float, higher: bool, measure: Measure,
             tiers: list[tuple[str, list[int]]]) -> dict[str, Any]:
    """A check measured on the first tier, widened to the next while undecided."""
    tried = []
    for on, idx in tiers:
        value, ci = measure(idx)
        outcome = judge(ci, limit, higher_is_better=higher)
        tried.append({"on": on, "prompts": len(idx), "value": round(value, 4), "ci": list(ci),
                      "outcome": outcome})
        if outcome != "undecided":
            break
    last = tried[-1]
    return {"check": name, "limit": limit, "value": last["value"], "ci": last["ci"],
            "outcome": last["outcome"], "prompts": last["prompts"], "on": last["on"],
            "tried": tried}


def _metric_on(ev: Evidence, role: str) -> Measure:
    def measure(idx: list[int]) -> tuple[float, tuple[float, float]]:
        preds, refs = ev.preds(role, idx), [ev.refs[i] for i in idx]
        value = float(ev.task.evaluate(preds, refs)[ev.metric])
        return value, metric_interval(ev.task, ev.metric, preds, refs)
    return measure


def _paired_on(ev: Evidence, role_a: str, role_b: str) -> Measure:
    """metric(b) − metric(a) on the same prompts, with its paired interval."""
    def measure(idx: list[int]) -> tuple[float, tuple[float, float]]:
        a, b, refs = ev.preds(role_a, idx), ev.preds(role_b, idx), [ev.refs[i] for i in idx]
        diff = float(ev.task.evaluate(b, refs)[ev.metric]) - float(ev.task.evaluate(a, refs)[ev.metric])
        return diff, paired_metric_interval(ev.task, ev.metric, a, b, refs)
    return measure


def _agreement_on(ev: Evidence, role: str, reference: str) -> Measure:
    def measure(idx: list[int]) -> tuple[float, tuple[float, float]]:
        same = [float(ev.answers[i][role] == ev.answers[i][reference]) for i in idx]
        return sum(same) / len(same), interval(same)
    return measure


def _interval_text(c: dict[str, Any]) -> str:
    return f"{c['value']:.3f} (95% {c['ci'][0]:.3f} to {c['ci'][1]:.3f}, {c['prompts']} prompts)"


def quality_checks(ev: Evidence, limits: Limits, shipped: dict[str, Any],
                   teacher: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The bar on what ships: the user's goal (or the teacher-relative bar) and the target's."""
    checks, m = [], ev.metric
    for name, bar in (("goal", limits.goal), ("min_quality", limits.min_quality)):
        if bar is None:
            continue
        c = _widened(name, bar, True, _metric_on(ev, Role.DISTILLED), ev.tiers)
        c["text"] = (f"{shipped['label']} {m} {_interval_text(c)} vs "
                     + ("the [goal] quality bar" if name == "goal" else "the target's minimum")
                     + f" {bar}")
        checks.append(c)
    if limits.goal is None and limits.max_teacher_gap is not None:
        if teacher is None or not ev.has(Role.TEACHER):
            checks.append({"check": "vs_teacher", "limit": -limits.max_teacher_gap, "value": None,
                           "ci": None, "outcome": "undecided", "prompts": 0, "on": "",
                           "tried": [], "text": "no [goal] min_quality and no teacher row to "
                           "compare with: set [goal] min_quality"})
        else:
            c = _widened("vs_teacher", -limits.max_teacher_gap, True,
                         _paired_on(ev, Role.TEACHER, Role.DISTILLED), ev.tiers)
            c["text"] = (f"{shipped['label']} − teacher, {m}: {_interval_text(c)} vs at most "
                         f"{limits.max_teacher_gap} below the teacher (no [goal] min_quality: "
                         "the bar is relative to the teacher)")
            checks.append(c)
    return checks


def quantization_checks(ev: Evidence, limits: Limits, shipped: dict[str, Any],
                        reference: dict[str, Any] | None) -> list[dict[str, Any]]:
    """What quantizing cost, against a reference decoded the way the shipped row is: KL
    (primary, a point over many tokens), then the metric loss and the greedy agreement."""
    checks: list[dict[str, Any]] = []
    if limits.max_kl is not None:
        kl = shipped.get("kl_vs_reference")
        top1 = shipped.get("top1_agreement")
        checks.append({"check": "max_kl", "limit": limits.max_kl, "value": kl, "ci": None,
                       # not measured: the check cannot pass
                       "outcome": "pass" if kl is not None and kl <= limits.max_kl else "fail",
                       "prompts": None, "on": "teacher-forced reference answers", "tried": [],
                       "primary": True,
                       "text": f"{shipped['label']} mean next-token KL vs the fp32 student: "
                               + ("not measured" if kl is None else f"{kl:.4g}")
                               + (f" (top-1 agreement {top1:.3f})" if top1 is not None else "")
                               + f" (maximum {limits.max_kl})"})
    if reference is None or not ev.has(reference["role"]):
        return checks
    ref, label = reference["role"], reference["label"]
    secondary = (  # (check, limit, higher is better, measure, what the value is)
        ("max_quant_loss", limits.max_quant_loss, False, _paired_on(ev, Role.DISTILLED, ref),
         f"vs {label}: {ev.metric} loss", "maximum {}; negative = a gain"),
        ("min_greedy_agreement", limits.min_greedy_agreement, True,
         _agreement_on(ev, Role.DISTILLED, ref), f"answers identical to {label}'s:", "minimum {}"))
    for name, limit, higher, measure, what, bound in secondary:
        if limit is None:
            continue
        c = _widened(name, limit, higher, measure, ev.tiers)
        c["text"] = f"{shipped['label']} {what} {_interval_text(c)} ({bound.format(limit)})"
        checks.append(c)
    return checks


def _defer_to_kl(checks: list[dict[str, Any]]) -> None:
    """Secondary quantization checks left undecided pass when the KL check passed."""
    if not any(c["check"] == "max_kl" and c["outcome"] == "pass" for c in checks):
        return
    for c in checks:
        if c["check"] in ("max_quant_loss", "min_greedy_agreement") and c["outcome"] == "undecided":
            c["outcome"], c["deferred"] = "pass", True
            c["text"] += " — undecided at this eval size; the KL check (primary) passed"


def _suggestion(c: dict[str, Any]) -> str:
    """'; about N prompts would decide it' when an eval of that size is plausible."""
    if c.get("ci") is None or c.get("value") is None or not c.get("prompts"):
        return ""
    more = needed_prompts(c["value"], tuple(c["ci"]), c["limit"], c["prompts"])
    if more is None or more > MAX_SUGGESTED_FACTOR * c["prompts"]:
        return "; the value sits too close to the limit for any practical eval to decide it"
    return f"; about {more} prompts would decide it"


def decide_ship(checks: list[dict[str, Any]], strict: bool) -> dict[str, Any]:
    """The decision from the checks: any clear failure → not shipped; undecided ones → shipped
    with a warning (refused when strict); else shipped. `exit_code` is the build's."""
    _defer_to_kl(checks)
    failed = [c for c in checks if c["outcome"] == "fail"]
    undecided = [c for c in checks if c["outcome"] == "undecided"]
    for c in checks:
        c["passed"] = c["outcome"] != "fail"
    if not checks:  # nothing judged the build: not a pass (set a bar or a target limit)
        outcome, ship = "fail", False
        sentence = ("Not shipped: no check judged it — neither the target nor [goal] sets a limit "
                    "(set [goal] min_quality, [gate] require_goal = true or the target's "
                    "max_quant_loss).")
    elif failed:
        outcome, ship = "fail", False
        sentence = "Not shipped: " + "; ".join(c["text"] for c in failed) + "."
    elif undecided and strict:
        outcome, ship = "undecided", False
        sentence = ("Not shipped ([gate] strict = true): undecided — "
                    + "; ".join(c["text"] + _suggestion(c) for c in undecided) + ".")
    elif undecided:
        outcome, ship = "undecided", True
        sentence = ("Shipped with a warning: undecided — "
                    + "; ".join(c["text"] + _suggestion(c) for c in undecided)
                    + ". ([gate] strict = true refuses such builds.)")
    else:
        outcome, ship = "pass", True
        sentence = "Shipped: every check passed."
    return {"ship": ship, "outcome": outcome, "exit_code": EXIT_SHIP if ship else EXIT_NO_SHIP,
            "strict": strict, "sentence": sentence, "checks": checks}


def decide_build(ev: Evidence, limits: Limits, rows: list[dict[str, Any]],
                 reference_role: str) -> dict[str, Any]:
    """Every check of the build, then the decision. `reference_role` is the row the
    quantization checks hold the shipped row to (decoded the same way)."""
    by_role = {r["role"]: r for r in rows}
    shipped = by_role.get(Role.DISTILLED)
    if shipped is None or not ev.has(Role.DISTILLED):
        return {"ship": False, "outcome": "fail", "exit_code": EXIT_NO_SHIP, "strict": limits.strict,
                "sentence": "Not shipped: the shipped artifact was not benchmarked.", "checks": []}
    checks = quality_checks(ev, limits, shipped, by_role.get(Role.TEACHER))
    checks += quantization_checks(ev, limits, shipped, by_role.get(reference_role))
    decision = decide_ship(checks, limits.strict)
    decision["reference"] = reference_role
    return decision

