"""Each drop reason, on real teacher mistakes seen here, and the kept canonical form."""

from __future__ import annotations

import json

from pipeline.stages.filter import filter_rows

REF = {"name": "Felix Malik", "item": "notebooks", "quantity": 30, "city": "Boise",
       "date": "2027-11-12"}
GOOD = '{"name":"Felix Malik","item":"notebooks","quantity":30,"city":"Boise","date":"2027-11-12"}'


def _row(i: int, response: str, prompt: str | None = None) -> dict:
    return {"id": f"r{i}", "prompt": prompt or f"prompt {i}", "response": response, "reference": REF}


def test_drop_reasons() -> None:
    rows = [
        _row(0, GOOD),
        _row(1, ""),
        _row(2, "x" * 700),
        _row(3, "Sure! The order is from Felix Malik."),
        _row(4, '{"name":"Felix Malik","item":"notebooks","quantity":30,"city":"Boise"}'),
        # Qwen-1.5B really did this on a message with "Ref 8030":
        _row(5, GOOD[:-1] + ',"ref":"8030"}'),
        _row(6, GOOD.replace('"quantity":30', '"quantity":"30"')),
        _row(7, GOOD.replace("2027-11-12", "12/11/2027")),
        _row(8, GOOD.replace("2027-11-12", "2027-02-30")),
        _row(9, GOOD, prompt="prompt 0"),  # same prompt and answer as row 0
        _row(10, "[1, 2, 3]"),
        _row(11, GOOD.replace('"quantity":30', '"quantity":true')),
    ]
    kept, dropped = filter_rows(rows, max_chars=600, dedupe=True)
    assert [r["id"] for r in kept] == ["r0"]
    reasons = {r["id"]: r["drop_reason"] for r in dropped}
    assert reasons == {"r1": "empty", "r2": "too_long", "r3": "invalid_json", "r4": "missing_keys",
                       "r5": "extra_keys", "r6": "wrong_type", "r7": "bad_date", "r8": "bad_date",
                       "r9": "duplicate", "r10": "invalid_json", "r11": "wrong_type"}


def test_kept_rows_are_canonical_compact_json() -> None:
    fenced = "```json\n" + json.dumps(json.loads(GOOD), indent=2) + "\n```"
    kept, dropped = filter_rows([_row(0, fenced)], max_chars=600, dedupe=True)
    assert not dropped
    assert kept[0]["response"] == GOOD
    assert kept[0]["teacher_field_accuracy"] == 1.0


def test_dedupe_can_be_disabled() -> None:
    kept, _ = filter_rows([_row(0, GOOD, "p"), _row(1, GOOD, "p")], max_chars=600, dedupe=False)
    assert len(kept) == 2
