"""The teacher as judge: pairwise, each artifact's answer vs the teacher's own, both orders.

For free-form answers a reference metric (chrF) misses what a reader cares about, so the
teacher is asked which of two answers to the same request is better — once with the
artifact's answer first and once with it second, to cancel position bias (LLM judges
favour one slot; see MT-Bench, Zheng et al. 2023). The two verdicts combine into one
outcome for the artifact: a win counts +1, a loss −1 and a tie 0 per order; the sum's sign
is the outcome (win in one order and tie in the other = win; A in both orders = tie, the
judge only followed the slot). Identical answers are a tie without asking.

Example:
    >>> from pipeline.measure.judge import combine, parse_verdict
    >>> combine(parse_verdict("A"), parse_verdict("B"))  # artifact first, then second: it won both
    'win'
    >>> combine(parse_verdict("A"), parse_verdict("A"))  # the judge always picked slot A
    'tie'
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Literal

Verdict = Literal["A", "B", "tie"]
Outcome = Literal["win", "tie", "loss"]

JUDGE_SYSTEM = (
    "You are a strict, impartial judge. You see a request and two answers to it, A and B. "
    "Decide which answer fulfils the request better: correct, complete, faithful to the "
    "request, following its instructions. Ignore which answer comes first and ignore length "
    "for its own sake. Reply with exactly one word: A, B or tie.")
JUDGE_USER = ("Request:\n{request}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}\n\n"
              "Which answer is better? Reply with exactly one word: A, B or tie.")


def judge_messages(request: str, a: str, b: str) -> tuple[dict[str, str], ...]:
    """The judge's chat for one ordered pair (the fixed system prompt first: llama.cpp
    reuses its KV cache from one pair to the next)."""
    return ({"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": JUDGE_USER.format(request=request, a=a, b=b)})


def parse_verdict(text: str) -> Verdict | None:
    """The judge's first word as a verdict ('A', 'B', 'tie'); None when it said neither."""
    match = re.match(r"\W*(answer\s+)?(a|b|tie|equal|both)\b", text.strip(), re.IGNORECASE)
    if not match:
        return None
    word = match.group(2).lower()
    return "A" if word == "a" else "B" if word == "b" else "tie"


def combine(first: Verdict | None, second: Verdict | None) -> Outcome:
    """The artifact's outcome from the verdict with its answer as A (`first`) and with it as
    B (`second`); an unreadable verdict counts as a tie in that order."""
    points = {"A": 1, "B": -1}.get(first or "tie", 0) + {"A": -1, "B": 1}.get(second or "tie", 0)
    return "win" if points > 0 else "loss" if points < 0 else "tie"


def pairs(eval_rows: list[dict[str, Any]], answers: dict[str, list[str]], teacher: list[str],
          n: int) -> tuple[dict[tuple[str, str], str], list[dict[str, Any]]]:
    """The distinct (request, answer) pairs to judge on the first `n` rows, and per role and
    row what each outcome will be read from: a pair key, or "same" when the answer is the
    teacher's up to spacing (a tie, nothing asked). Artifacts that give the same answer share
    one judgment."""
    to_judge: dict[tuple[str, str], str] = {}  # (row id, answer) -> the teacher's answer
    plan = []
    for i, row in enumerate(eval_rows[:n]):
        for role, texts in answers.items():
            answer, ref = texts[i].strip(), teacher[i].strip()
            if " ".join(answer.split()) == " ".join(ref.split()):
                plan.append({"role": role, "id": row["id"], "pair": None})
                continue
            to_judge.setdefault((row["id"], answer), ref)
            plan.append({"role": role, "id": row["id"], "pair": (row["id"], answer)})
    return to_judge, plan


def tally(plan: list[dict[str, Any]], verdicts: dict[tuple[str, str], tuple[Any, Any]]
          ) -> dict[str, dict[str, Any]]:
    """Per role: wins, ties and losses vs the teacher, and the win rate counting a tie as ½."""
    counts: dict[str, Counter[str]] = {}
    for item in plan:
        outcome = "tie" if item["pair"] is None else combine(*verdicts[item["pair"]])
        counts.setdefault(item["role"], Counter())[outcome] += 1
    out = {}
    for role, c in counts.items():
        n = sum(c.values())
        out[role] = {"win": c["win"], "tie": c["tie"], "loss": c["loss"], "n": n,
                     "win_rate": round((c["win"] + c["tie"] / 2) / n, 4)}
    return out
