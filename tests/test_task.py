"""The built-in extraction task: its generator, shipped splits and schema, parsed and scored
by the `json` kind (no code path of its own)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from pipeline.config import load_config
from pipeline.measure.quality import invented_spans
from pipeline.tasks import make_task, shipped_split
from pipeline.tasks.generator import (
    EVAL_TEMPLATES,
    HAND_WRITTEN,
    SHIPPED,
    TRAIN_TEMPLATES,
    WIDE_TEMPLATES,
    generate,
)
from pipeline.tasks.inputs import normalized_prompt

REF = {"name": "Ann Lee", "item": "desk lamps", "quantity": 2, "city": "Oslo", "date": "2025-03-04"}
TASK = make_task(load_config(None).task.spec)


def test_generator_is_deterministic_and_splits_differ() -> None:
    assert generate("train", 20, 7) == generate("train", 20, 7)
    assert generate("train", 5, 7) == generate("train", 20, 7)[:5]
    assert not set(TRAIN_TEMPLATES + WIDE_TEMPLATES) & set(EVAL_TEMPLATES)
    train_prompts = {r["prompt"] for r in generate("train", 200, 1)}
    assert not train_prompts & {r["prompt"] for r in generate("eval", 60, 1)}


def _shipped(split: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in shipped_split("extraction", split).read_text().splitlines()]


def test_shipped_splits_match_the_generator() -> None:
    assert _shipped("train") == generate("train", SHIPPED["train"], seed=2026)
    generated = [r for r in _shipped("eval") if r["set"] == "generated"]
    assert generated == [{**r, "set": "generated"} for r in generate("eval", SHIPPED["eval"], 2026)]


def test_hand_written_eval_is_big_valid_and_never_trained_on() -> None:
    hand = [r for r in _shipped("eval") if r["set"] == HAND_WRITTEN]
    assert len(hand) >= 200
    generated = {r["prompt"] for r in generate("train", 2000, 2026) + generate("eval", 500, 2026)}
    assert not generated & {r["prompt"] for r in hand}  # not produced by the generator
    train = {normalized_prompt(r["prompt"]) for r in _shipped("train")}
    assert not train & {normalized_prompt(r["prompt"]) for r in hand}
    for row in hand:
        assert TASK.reference(row["reference"]) == row["reference"]
        # what the report calls an invented span never happens in a reference
        assert invented_spans([row["reference"]], [row["prompt"]], ("name", "item", "city")) == 0


def test_train_references_can_be_copied_from_their_messages() -> None:
    """Every generated train answer is in its message: the name, item and city as written
    (a title, an assistant or a code beside them is not part of them), the date readable."""
    from pipeline.runkit.dates import date_pattern

    rows = generate("train", 600, 5)
    assert invented_spans([r["reference"] for r in rows], [r["prompt"] for r in rows],
                          ("name", "item", "city")) == 0
    assert all(re.fullmatch(date_pattern(r["prompt"]), r["reference"]["date"]) for r in rows)
    titled = [r for r in rows if "Dr." in r["prompt"] or "Prof." in r["prompt"]]
    assert titled and not any(r["reference"]["name"].startswith(("Dr", "Prof")) for r in titled)


def test_greetings_and_streets_are_beside_the_values_never_in_them() -> None:
    """Issue 31's train rows: a greeting or sign-off beside the customer's name, a street and
    postcode beside the city; the references hold the name and the city alone."""
    from pipeline.tasks.generator import GREETINGS, SIGNOFFS

    rows = [r for r in generate("train", 600, 5)
            if any(g in r["prompt"] for g in GREETINGS + SIGNOFFS)]
    assert len(rows) > 60
    for row in rows:
        ref = row["reference"]
        assert ref["name"] not in GREETINGS + SIGNOFFS
        assert not re.search(r"\d", ref["city"]) and "Street" not in ref["city"]


def test_references_are_valid_answers_of_the_schema() -> None:
    for row in generate("eval", 60, 3):
        assert TASK.reference(row["reference"]) == row["reference"]
        obj, why = TASK.parse(json.dumps(row["reference"]))
        assert why is None and TASK.score(obj, row["reference"])["exact"] == 1.0


def test_score_hand_cases() -> None:
    pred = dict(REF, item="Desk Lamp", city="oslo")  # case and plural do not count
    assert TASK.score(pred, REF)["field_accuracy"] == 1.0
    wrong = dict(REF, quantity=3, date="2025-04-03")
    s = TASK.score(wrong, REF)
    assert s["field_accuracy"] == pytest.approx(0.6) and s["exact"] == 0.0 and s["valid"] == 1.0
    assert s["field_quantity"] == 0.0 and s["field_name"] == 1.0
    none = TASK.score(None, REF)
    assert none["valid"] == 0.0 and none["field_accuracy"] == 0.0
    agg = TASK.evaluate([REF, None], [REF, REF])
    assert agg["field_accuracy"] == 0.5 and agg["valid"] == 0.5


def test_canonical_is_compact_json_in_schema_order() -> None:
    shuffled = '```json\n{"date": "2025-03-04", "city": "Oslo", "quantity": 2.0, "item": "desk lamps",' \
               ' "name": "Ann Lee"}\n```'
    obj, why = TASK.parse(shuffled)
    assert why is None
    assert TASK.canonical(obj) == ('{"name":"Ann Lee","item":"desk lamps","quantity":2,'
                                   '"city":"Oslo","date":"2025-03-04"}')


@pytest.mark.parametrize(("reply", "reason"), [
    ("", "empty"),
    ("no json here", "invalid_json"),
    ("[1, 2]", "invalid_json"),
    (json.dumps({k: v for k, v in REF.items() if k != "city"}), "missing_field:city"),
    (json.dumps(dict(REF, ticket="88213")), "extra_field:ticket"),
    (json.dumps(dict(REF, quantity="2")), "wrong_type:quantity"),
    (json.dumps(dict(REF, quantity=True)), "wrong_type:quantity"),
    (json.dumps(dict(REF, quantity=0)), "out_of_range:quantity"),
    (json.dumps(dict(REF, date="2025-02-30")), "bad_format:date"),
    (json.dumps(dict(REF, name="  ")), "pattern_mismatch:name"),
])
def test_drop_reasons_name_the_field(reply: str, reason: str) -> None:
    assert TASK.parse(reply) == (None, reason)
