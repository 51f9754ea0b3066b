"""The default task: generator, shipped splits, parser and metric on hand-made cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import UserError
from pipeline.tasks import load_rows, shipped_split
from pipeline.tasks.extraction import aggregate, parse_answer, score
from pipeline.tasks.generator import EVAL_TEMPLATES, TRAIN_TEMPLATES, generate

REF = {"name": "Ann Lee", "item": "desk lamps", "quantity": 2, "city": "Oslo", "date": "2025-03-04"}


def test_generator_is_deterministic_and_splits_differ() -> None:
    assert generate("train", 20, 7) == generate("train", 20, 7)
    assert generate("train", 5, 7) == generate("train", 20, 7)[:5]
    assert not set(TRAIN_TEMPLATES) & set(EVAL_TEMPLATES)
    train_prompts = {r["prompt"] for r in generate("train", 200, 1)}
    assert not train_prompts & {r["prompt"] for r in generate("eval", 60, 1)}


def test_shipped_splits_match_the_generator() -> None:
    for split, count in (("train", 200), ("eval", 60)):
        rows = [json.loads(x) for x in shipped_split("extraction", split).read_text().splitlines()]
        assert rows == generate(split, count, seed=2026)


def test_references_parse_as_valid_answers() -> None:
    for row in generate("eval", 60, 3):
        obj, why = parse_answer(json.dumps(row["reference"]))
        assert why is None and score(obj, row["reference"])["exact"] == 1.0


def test_score_hand_cases() -> None:
    pred = dict(REF, item="Desk Lamp", city="oslo")  # case and plural do not count
    assert score(pred, REF)["field_accuracy"] == 1.0
    wrong = dict(REF, quantity=3, date="2025-04-03")
    s = score(wrong, REF)
    assert s["field_accuracy"] == pytest.approx(0.6) and s["exact"] == 0.0 and s["valid"] == 1.0
    none = score(None, REF)
    assert none["valid"] == 0.0 and none["field_accuracy"] == 0.0
    agg = aggregate([score(REF, REF), none])
    assert agg["field_accuracy"] == 0.5 and agg["valid"] == 0.5


@pytest.mark.parametrize(("text", "message"), [
    ("", "has no rows"),
    ("\n\n", "has no rows"),
    ("{not json}\n", ":1: not valid JSON"),
    ('{"id": "a"}\n', "non-empty string 'prompt'"),
    ('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n', "duplicate id 'a'"),
])
def test_load_rows_rejects_bad_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_rows(path, "train data")


def test_eval_rows_need_references(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text('{"id": "a", "prompt": "x"}\n')
    with pytest.raises(UserError, match="need a 'reference'"):
        load_rows(path, "eval data", need_reference=True)
