"""The encoding search: smallest-first by bits per weight, stops at the first pass, and
which type ships when none passes (pipeline.measure.search)."""

from __future__ import annotations

from typing import Any

from pipeline.measure.search import chosen, search


def _decide(outcomes: dict[str, str]) -> Any:
    asked: list[str] = []

    def decide(quant: str) -> dict[str, Any]:
        asked.append(quant)
        return {"outcome": outcomes[quant], "ship": outcomes[quant] != "fail"}
    return decide, asked


def test_the_search_goes_smallest_first_and_stops_at_the_first_pass() -> None:
    decide, asked = _decide({"Q4_0": "fail", "IQ4_NL": "pass", "Q4_K_M": "pass"})
    tried = search([("Q4_K_M", 6.2), ("Q4_0", 4.6), ("IQ4_NL", 5.3)], decide)
    assert asked == ["Q4_0", "IQ4_NL"]  # by real bits per weight, not by the list's order
    assert chosen(tried, own="Q4_K_M") == "IQ4_NL"
    assert [c["bpw"] for c in tried] == [4.6, 5.3]


def test_none_passing_ships_the_smallest_undecided_else_the_targets_own() -> None:
    decide, asked = _decide({"Q4_0": "fail", "IQ4_NL": "undecided", "Q4_K_M": "undecided"})
    tried = search([("Q4_K_M", 6.2), ("Q4_0", 4.6), ("IQ4_NL", 5.3)], decide)
    assert asked == ["Q4_0", "IQ4_NL", "Q4_K_M"]  # nothing passed: every candidate tried
    assert chosen(tried, own="Q4_K_M") == "IQ4_NL"
    decide, _ = _decide({"Q4_0": "fail", "Q4_K_M": "fail"})
    assert chosen(search([("Q4_K_M", 6.2), ("Q4_0", 4.6)], decide), own="Q4_K_M") == "Q4_K_M"
