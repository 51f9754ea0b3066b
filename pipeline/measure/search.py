"""The encoding search: the smallest candidate encoding whose decision passes ships.

A target may list candidate types besides its own (`encodings`). The bench measures them
smallest-first by the real bits per weight of the written files, each decoded the way the
target ships, and decides each with the build's own decision (pipeline.gate.ship_decision:
the same limits and intervals the report uses). The first that passes ships and the search
stops there; when none passes, the smallest that ships with a warning (undecided), else the
target's own type — whose decision then says why it fails. Every candidate tried is listed
(size, bits per weight, KL, metric with interval, outcome).

Example:
    >>> tried = [{"quant": "Q4_0", "bpw": 4.5, "outcome": "fail", "ship": False},
    ...          {"quant": "IQ4_NL", "bpw": 5.3, "outcome": "pass", "ship": True}]
    >>> chosen(tried, own="Q4_K_M")
    'IQ4_NL'
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.measure.roles import ORDER, Role
from pipeline.outputs import ANSWERS, BENCH


def shipped_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The bench row that ships (the distilled artifact: the search's pick where it ran)."""
    return next((r for r in rows if r["role"] == Role.DISTILLED), None)


def shipped_quant(bench: dict[str, Any], own: str) -> str:
    """The type that ships: the search's pick where the bench ran one, else the target's."""
    return str((bench.get("search") or {}).get("shipped") or own)


def chosen(tried: list[dict[str, Any]], own: str) -> str:
    """The type that ships: the first (smallest) that passed, else the smallest shipped with
    a warning, else the target's own."""
    for wanted in ("pass", "undecided"):
        for c in tried:
            if c["outcome"] == wanted and c["ship"]:
                return str(c["quant"])
    return own


def search(candidates: list[tuple[str, float]],
           decide: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """Decide each (type, bits per weight) smallest-first until one passes; every one tried."""
    tried = []
    for quant, bpw in sorted(candidates, key=lambda c: c[1]):
        tried.append({"quant": quant, "bpw": bpw, **decide(quant)})
        if tried[-1]["outcome"] == "pass":
            break
    return tried


def merge_benches(parts: list[Path], out_dir: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Several row-loop outputs (bench.json + answers.jsonl, same eval prompts) as one, in
    report order, written to out_dir with `extra` top-level fields; returns bench.json's data."""
    docs = [json.loads((p / BENCH).read_text()) for p in parts]
    rows = sorted((r for d in docs for r in d["rows"]), key=lambda r: ORDER.index(r["role"]))
    result = {**docs[0], "rows": rows,
              "scored_rows": max(d["scored_rows"] for d in docs), **extra}
    (out_dir / BENCH).write_text(json.dumps(result, indent=2))
    from pipeline.measure.bench import merged_answers

    with (out_dir / ANSWERS).open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in merged_answers(parts))
    return result
