"""Each filter on real teacher mistakes seen here, dedupe, self-consistency and the kept form."""

from __future__ import annotations

import json
from typing import Any

from pipeline.config import load_config
from pipeline.filters import FilterSettings, apply_filters

REF = {"name": "Felix Malik", "item": "notebooks", "quantity": 30, "city": "Boise",
       "date": "2027-11-12"}
GOOD = '{"name":"Felix Malik","item":"notebooks","quantity":30,"city":"Boise","date":"2027-11-12"}'
TASK = load_config(None).task.spec  # the built-in extraction task (a json task)
DEFAULT = {"task": TASK, "checks": ["length", "refusal", "validator", "reference"], "min_response_chars": 1,
           "max_response_chars": 600, "validator": "task", "dedupe": "normalized", "n_samples": 1}


def _row(i: int, response: str, prompt: str | None = None, sample: int = 0,
         reference: dict | None = REF) -> dict[str, Any]:
    return {"id": f"r{i}", "sample": sample, "prompt": prompt or f"prompt {i}",
            "response": response, "reference": reference}


def _reasons(rows: list[dict[str, Any]], **settings: Any) -> tuple[list[str], dict[str, str]]:
    kept, dropped = apply_filters(rows, FilterSettings(**{**DEFAULT, **settings}))
    return [r["id"] for r in kept], {r["id"]: r["drop_reason"] for r in dropped}


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
        _row(9, GOOD, prompt="Prompt 0!"),  # same prompt up to case/punctuation, same answer
        _row(10, "[1, 2, 3]"),
        _row(11, GOOD.replace('"quantity":30', '"quantity":true')),
        _row(12, "I'm sorry, but I can't help with extracting personal data."),
        # Qwen-1.5B's systematic error seen here: the container word dropped from the item
        _row(13, GOOD.replace('"notebooks"', '"A4 paper"')),
        {**_row(14, ""), "error": "HTTP 503", "response": None},
    ]
    kept, reasons = _reasons(rows)
    assert kept == ["r0"]
    assert reasons == {"r1": "empty", "r2": "too_long", "r3": "invalid_json",
                       "r4": "missing_field:date", "r5": "extra_field:ref",
                       "r6": "wrong_type:quantity", "r7": "bad_format:date",
                       "r8": "bad_format:date",
                       "r9": "duplicate", "r10": "invalid_json", "r11": "wrong_type:quantity",
                       "r12": "refusal", "r13": "contradicts_reference", "r14": "teacher_failed"}


def test_reference_check_only_where_there_is_a_reference() -> None:
    wrong = GOOD.replace('"notebooks"', '"A4 paper"')
    kept, _ = _reasons([_row(0, wrong, reference=None)])
    assert kept == ["r0"]
    kept, _ = _reasons([_row(0, wrong)], checks=["validator"])  # the check can be turned off
    assert kept == ["r0"]


def test_kept_rows_are_canonical_compact_json() -> None:
    fenced = "```json\n" + json.dumps(json.loads(GOOD), indent=2) + "\n```"
    kept, dropped = apply_filters([_row(0, fenced)], FilterSettings(**DEFAULT))
    assert not dropped and kept[0]["answer"] == GOOD


def test_exact_dedupe_keeps_differently_written_prompts() -> None:
    rows = [_row(0, GOOD, "p one"), _row(1, GOOD, "P one!")]
    assert _reasons(rows, dedupe="exact")[0] == ["r0", "r1"]
    assert _reasons(rows, dedupe="normalized")[0] == ["r0"]
    assert _reasons(rows, dedupe="off")[0] == ["r0", "r1"]


def test_self_consistency_keeps_the_majority() -> None:
    other = GOOD.replace("Boise", "Boston")
    rows = [_row(0, GOOD, "p", 0), _row(0, other, "p", 1), _row(0, GOOD, "p", 2),
            _row(1, GOOD, "q", 0), _row(1, other, "q", 1), _row(1, "nonsense", "q", 2)]
    settings = FilterSettings(**{**DEFAULT, "n_samples": 3, "checks": ["validator"]})
    kept, dropped = apply_filters(rows, settings)
    assert [(r["id"], r["answer"], r["votes"]) for r in kept] == [("r0", GOOD, 2)]
    reasons = sorted((r["id"], r["sample"], r["drop_reason"]) for r in dropped)
    assert reasons == [("r0", 1, "minority_answer"), ("r0", 2, "majority_duplicate"),
                       ("r1", 0, "no_majority"),
                       ("r1", 1, "no_majority"), ("r1", 2, "invalid_json")]


def test_other_validators() -> None:
    rows = [_row(0, "positive", reference=None), _row(1, "Positive!", reference=None)]
    assert _reasons(rows, validator="labels", labels=["positive", "negative"])[1] == \
        {"r1": "labels_mismatch"}
    assert _reasons(rows, validator="regex", pattern=r"[a-z]+")[1] == {"r1": "regex_mismatch"}
    schema = {"type": "object", "required": ["label"]}
    rows = [_row(0, '{"label": "x"}', reference=None), _row(1, '{"lbl": "x"}', reference=None)]
    assert _reasons(rows, validator="json_schema", json_schema=schema)[1] == \
        {"r1": "json_schema_mismatch"}
