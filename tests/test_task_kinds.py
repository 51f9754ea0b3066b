"""Task kinds by hand on small cases: json normalisation (arrays, dates, nullable, enums),
label metrics (accuracy, macro-F1, per-class, confusion counts), text chrF, and a toy kind
registered from a test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pipeline.config import load_config
from pipeline.errors import UserError
from pipeline.tasks import KINDS, make_task, register_kind
from pipeline.tasks.base import TaskSpec

EVENT = {"type": "object", "additionalProperties": False,
         "required": ["title", "date", "kind", "attendees", "room"],
         "properties": {"title": {"type": "string"}, "date": {"type": "string", "format": "date"},
                        "kind": {"enum": ["meeting", "call"]},
                        "attendees": {"type": "array", "items": {"type": "string"}},
                        "room": {"type": ["string", "null"]}}}
REF = {"title": "Budget review", "date": "2026-03-04", "kind": "call",
       "attendees": ["Ann Lee", "Bo Chen"], "room": None}


def _json() -> Any:
    return make_task(TaskSpec(name="events", kind="json", json_schema=EVENT, primary="field_accuracy"))


def test_json_arrays_as_sets_and_nullable_fields() -> None:
    task = _json()
    pred = dict(REF, title="the budget review", attendees=["bo chen", "Ann  Lee"])
    assert task.score(pred, REF)["field_accuracy"] == 1.0  # order, case, article, spacing
    assert task.score(dict(REF, attendees=["Ann Lee"]), REF)["field_attendees"] == 0.0
    assert task.score(dict(REF, room="B2"), REF)["field_room"] == 0.0  # null only equals null
    assert task.parse(json.dumps(dict(REF, room="B2")))[1] is None  # ["string", "null"]


def test_json_enums_dates_and_extra_keys_are_validated() -> None:
    task = _json()
    assert task.parse(json.dumps(dict(REF, kind="lunch"))) == (None, "not_in_enum:kind")
    assert task.parse(json.dumps(dict(REF, date="4 March"))) == (None, "bad_format:date")
    assert task.parse(json.dumps(dict(REF, notes="x"))) == (None, "extra_field:notes")
    assert task.parse(json.dumps(dict(REF, attendees="Ann"))) == (None, "wrong_type:attendees")


def test_json_dates_compare_as_dates() -> None:
    schema = {"type": "object", "properties": {"d": {"type": "string", "format": "date"}}}
    task = make_task(TaskSpec(name="d", kind="json", json_schema=schema, primary="exact"))
    assert task.score({"d": "2026-03-04"}, {"d": "2026-03-04"})["exact"] == 1.0
    assert task.score({"d": "2026-03-05"}, {"d": "2026-03-04"})["exact"] == 0.0


LABELS = ("billing", "shipping", "technical")


def _label() -> Any:
    return make_task(TaskSpec(name="t", kind="label", labels=LABELS,
                              aliases={"invoice": "billing"}, primary="accuracy"))


def test_label_parse_is_case_space_and_alias_insensitive() -> None:
    task = _label()
    assert task.parse("  Shipping.") == ("shipping", None)
    assert task.parse('"INVOICE"') == ("billing", None)
    assert task.parse("refunds") == (None, "unknown_label")
    with pytest.raises(ValueError, match="not one of the labels"):
        task.reference("refunds")


def test_label_metrics_by_hand() -> None:
    refs = ["billing", "billing", "shipping", "shipping", "technical"]
    preds = ["billing", "shipping", "shipping", None, "technical"]
    m = _label().evaluate(preds, refs)
    assert m["accuracy"] == pytest.approx(3 / 5) and m["valid"] == pytest.approx(4 / 5)
    # billing P=1/1 R=1/2 F1=2/3; shipping P=1/2 R=1/2 F1=1/2; technical F1=1
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    per = m["details"]["per_class"]
    assert per["billing"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    conf = m["details"]["confusion"]
    assert conf["labels"] == [*LABELS, "(invalid)"]
    assert conf["matrix"] == [[1, 1, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0]]


def test_text_chrf() -> None:
    task = make_task(TaskSpec(name="t", kind="text", primary="chrf"))
    same = task.evaluate(["The parcel ships on Monday."], ["The parcel ships on Monday."])
    assert same["chrf"] == 1.0 and same["exact"] == 1.0
    other = task.evaluate(["zzzz qqqq"], ["The parcel ships on Monday."])
    assert other["chrf"] < 0.05 and other["exact"] == 0.0
    close = task.evaluate(["The parcel ships Monday"], ["The parcel ships on Monday."])
    assert 0.5 < close["chrf"] < 1.0
    assert task.evaluate([None], ["x"])["valid"] == 0.0


class YesNo:
    """A toy kind: "y"/"n" answers."""

    version: ClassVar[str] = "1"
    metrics: ClassVar[tuple[str, ...]] = ("hit", "valid")
    exact_metric: ClassVar[str | None] = "hit"
    columns: ClassVar[tuple[tuple[str, str, str], ...]] = (("hit", "hit", "{:.2f}"),)

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec

    def reference(self, raw: Any) -> str:
        return str(raw)

    def parse(self, text: str) -> tuple[str | None, str | None]:
        t = text.strip().lower()[:1]
        return (t, None) if t in ("y", "n") else (None, "not_yes_no")

    def canonical(self, answer: str) -> str:
        return answer

    def score(self, pred: str | None, ref: str) -> dict[str, float]:
        return {"hit": float(pred == ref), "valid": float(pred is not None)}

    def evaluate(self, preds: list[Any], refs: list[Any]) -> dict[str, Any]:
        scores = [self.score(p, r) for p, r in zip(preds, refs, strict=True)]
        return {k: sum(s[k] for s in scores) / len(scores) for k in self.metrics}

    @staticmethod
    def contract(spec: TaskSpec) -> str:
        return "Reply y or n."


def test_a_toy_kind_is_one_class_and_one_registry_line(tmp_path: Path) -> None:
    from pipeline.filters import FilterSettings, apply_filters

    register_kind("yesno", YesNo)
    try:
        cfg = tmp_path / "c.toml"
        cfg.write_text('[teacher]\nmodel = "m"\n[student]\nmodel = "m"\n[task]\nkind = "yesno"\n'
                       'instructions = "Is it raining?"\ntrain_data = "t.jsonl"\n')
        task = load_config(cfg).task
        assert task.primary_metric == "hit"
        assert task.teacher_prompt.system == "Is it raining?\nReply y or n."
        rows = [{"id": str(i), "sample": 0, "prompt": f"p{i}", "response": r, "reference": "y"}
                for i, r in enumerate(["Yes", "no", "maybe"])]
        kept, dropped = apply_filters(rows, FilterSettings(task=task.spec, checks=["validator", "reference"]))
        assert [r["answer"] for r in kept] == ["y"]
        assert sorted(r["drop_reason"] for r in dropped) == ["contradicts_reference", "not_yes_no"]
    finally:
        KINDS.pop("yesno")


def _config(tmp_path: Path, task: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f'[teacher]\nmodel = "m"\n[student]\nmodel = "m"\n[task]\n{task}\n')
    return path


@pytest.mark.parametrize(("task", "message"), [
    ('name = "tickets"', "'tickets' is not a built-in task"),
    ('kind = "label"\nlabels = ["a"]\ninstructions = "x"', "at least two labels"),
    ('kind = "label"\nlabels = ["a", "b"]', "give instructions"),
    ('kind = "label"\nlabels = ["a", "b"]\ninstructions = "x"\naliases = {z = "c"}', "aliases: 'z'"),
    ('kind = "label"\nlabels = ["a", "b"]\ninstructions = "x"\nprimary_metric = "chrf"',
     "primary_metric 'chrf' is not a label metric"),
    ('kind = "json"\ninstructions = "x"', "needs schema_file"),
    ('kind = "json"\ninstructions = "x"\nschema_file = "nope.json"', "schema_file .*nope.json"),
    ('kind = "json"\ninstructions = "x"\njson_schema = {type = "array"}', "top level must be"),
    ('kind = "json"\ninstructions = "x"\n[task.json_schema]\ntype = "object"\n'
     '[task.json_schema.properties.n]\ntype = "integr"', "not a valid JSON Schema at properties/n/type"),
    ('kind = "label"\nlabels = ["a", "b"]\ninstructions = "x"\n[task.student_prompt]\n'
     'system = "s"\nuser_template = "{text}"', "exactly one placeholder, {prompt}"),
    ('kind = "json"\ninstructions = "x"\ncopy_fields = ["n"]\n[task.json_schema]\ntype = "object"\n'
     '[task.json_schema.properties.n]\ntype = "integer"', "copy_fields: 'n' is not a string field"),
    ('kind = "label"\nlabels = ["a", "b"]\ninstructions = "x"\nprimary_set = "h"',
     "primary_set needs set_field"),
])
def test_task_config_errors_name_the_key(tmp_path: Path, task: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_config(_config(tmp_path, task))


@pytest.mark.parametrize(("old", "new"), [
    ('[teacher]\nmodel = "m"\nsystem_prompt = "x"', "task.teacher_prompt.system"),
    ('[teacher]\nmodel = "m"\n[student]\nmodel = "m"\nsystem_prompt = "x"', "task.student_prompt.system"),
    ('[teacher]\nmodel = "m"\n[student]\nmodel = "m"\n[goal]\nmin_field_accuracy = 0.8',
     "goal.min_quality"),
])
def test_moved_keys_name_their_new_place(tmp_path: Path, old: str, new: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(old + ("\n[student]\nmodel = \"m\"" if "[student]" not in old else ""))
    with pytest.raises(UserError, match=f"moved: write {new}"):
        load_config(path)


def test_paths_in_a_config_file_are_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps(EVENT))
    task = load_config(_config(tmp_path, 'kind = "json"\ninstructions = "x"\nschema_file = "s.json"\n'
                                         'train_data = "t.csv"')).task
    assert task.json_schema == EVENT and task.train_data == str(tmp_path / "t.csv")
    assert '"attendees"' in task.teacher_prompt.system  # the contract is in the default prompt
