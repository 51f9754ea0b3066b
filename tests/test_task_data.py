"""Task data as users have it: CSV / Parquet / datasets folders with column mapping and a
prompt template; bad rows named by file, row and column; the prompts step's holdout and
train/eval overlap; an unlabelled eval split labelled by the teacher (eval_set)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import UserError
from pipeline.stage import StageContext
from pipeline.tasks import make_task
from pipeline.tasks.base import TaskSpec
from pipeline.tasks.inputs import Columns, load_rows, read_rows

LABELS = ("billing", "shipping", "technical")
TASK = make_task(TaskSpec(name="tickets", kind="label", labels=LABELS, primary="accuracy"))
TICKETS = [{"ticket": i, "subject": f"subject {i}", "body": f"body {i}", "category": c}
           for i, c in enumerate(["Billing", "shipping", "technical", None])]
COLS = Columns(id_field="ticket", prompt_template="Subject: {subject}\n\n{body}",
               reference_field="category")


def _expected() -> list[dict[str, Any]]:
    return [{"id": str(t["ticket"]), "prompt": f"Subject: {t['subject']}\n\n{t['body']}",
             "reference": t["category"].lower() if t["category"] else None} for t in TICKETS]


def test_csv_with_column_mapping_and_template(tmp_path: Path) -> None:
    import csv

    path = tmp_path / "tickets.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(TICKETS[0]))
        writer.writeheader()
        writer.writerows(TICKETS)
    assert load_rows(path, "train data", TASK, COLS) == _expected()


def test_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "tickets.parquet"
    pq.write_table(pa.Table.from_pylist(TICKETS), path)
    assert load_rows(path, "train data", TASK, COLS) == _expected()


def test_datasets_save_to_disk_folder(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(TICKETS).save_to_disk(str(tmp_path / "ds"))
    assert load_rows(tmp_path / "ds", "train data", TASK, COLS) == _expected()
    datasets.DatasetDict({"train": datasets.Dataset.from_list(TICKETS)}).save_to_disk(
        str(tmp_path / "dd"))
    with pytest.raises(UserError, match="holds several splits \\(train\\): give one split's folder"):
        load_rows(tmp_path / "dd", "train data", TASK, COLS)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("a.csv", "ticket,text,category\n1,hello,refunds\n",
     "a.csv: line 2: column 'category': 'refunds' is not one of the labels"),
    ("b.csv", "ticket,text,category\n1,,billing\n", "b.csv: line 2: column 'text' needs a non-empty"),
    ("c.csv", "ticket,text,category\n1,a,billing\n1,b,billing\n", "c.csv: line 3: duplicate id '1'"),
    ("d.jsonl", '{"ticket": 1, "text": "a"}\n{oops\n', "d.jsonl: line 2: not valid JSON"),
    ("e.jsonl", "[1, 2]\n", "e.jsonl: line 1: each row must be a JSON object"),
    ("f.csv", "", "f.csv has no rows"),
    ("g.xlsx", "x", "unknown data format '.xlsx'"),
    ("h.parquet", "not parquet", "h.parquet: not a readable Parquet file"),
])
def test_bad_rows_are_one_line_naming_file_row_and_column(tmp_path: Path, name: str, content: str,
                                                           message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    cols = Columns(id_field="ticket", prompt_field="text", reference_field="category")
    with pytest.raises(UserError, match=message) as err:
        load_rows(path, "train data", TASK, cols)
    assert "\n" not in str(err.value)


def test_not_utf8_and_missing_template_column(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("ticket,text\n1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8 text"):
        load_rows(path, "train data", TASK, Columns(id_field="ticket", prompt_field="text"))
    path = tmp_path / "t.csv"
    path.write_text("ticket,subject\n1,hi\n")
    with pytest.raises(UserError, match="line 2: column 'body' \\(used by task.prompt_template\\) "
                       "is missing: the row has 'ticket', 'subject'"):
        load_rows(path, "train data", TASK, COLS)


def test_an_empty_cell_is_an_empty_value(tmp_path: Path) -> None:
    """A chat message without a subject renders with an empty subject; a row with every
    template column empty has no prompt and is the error (one line, naming the row)."""
    path = tmp_path / "t.csv"
    path.write_text("ticket,subject,body,category\n1,,my card was charged twice,billing\n"
                    "2,Parcel,,shipping\n")
    rows = load_rows(path, "train data", TASK, COLS)
    assert [r["prompt"] for r in rows] == ["Subject: \n\nmy card was charged twice",
                                           "Subject: Parcel\n\n"]
    path.write_text("ticket,subject,body,category\n1,hi,there,billing\n2,, ,shipping\n")
    with pytest.raises(UserError, match="line 3: every column of task.prompt_template "
                       "\\(subject, body\\) is empty"):
        load_rows(path, "train data", TASK, COLS)


def _run(stage_name: str, settings: Any, inputs: dict[str, Path], out: Path) -> dict[str, Any]:
    from pipeline.stages import REGISTRY

    out.mkdir()
    return REGISTRY[stage_name].run(StageContext(stage_name, settings, inputs, out)).model_dump(
        exclude_none=True)


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_holdout_and_overlap(tmp_path: Path) -> None:
    from pipeline.stages.prompts import PromptsSettings

    train = _jsonl(tmp_path / "train.jsonl", [{"id": f"t{i}", "prompt": f"Ticket number {i}"}
                                              for i in range(20)])
    s = PromptsSettings(task=TASK.spec, columns=Columns(), has_eval=False, holdout=5,
                        max_train_rows=0, max_eval_rows=0)
    summary = _run("prompts", s, {"train_data": train}, tmp_path / "a")
    assert summary == {"train": 15, "eval": 5, "eval_with_reference": 0, "held_out": 5,
                       "overlap_dropped": 0}
    held = {r["id"] for r in read_rows(tmp_path / "a" / "eval.jsonl")}
    assert not held & {r["id"] for r in read_rows(tmp_path / "a" / "train.jsonl")}
    # stable: adding rows keeps what was held out, held out
    more = _jsonl(tmp_path / "more.jsonl", [{"id": f"t{i}", "prompt": f"Ticket number {i}"}
                                            for i in range(21)])
    _run("prompts", s, {"train_data": more}, tmp_path / "b")
    assert held <= {r["id"] for r in read_rows(tmp_path / "b" / "eval.jsonl")} | {"t20"}
    # an eval prompt that is also a train prompt (up to case and punctuation) leaves training
    evals = _jsonl(tmp_path / "eval.jsonl", [{"id": "e1", "prompt": "TICKET number 3!",
                                              "reference": "billing"}])
    s2 = s.model_copy(update={"has_eval": True})
    summary = _run("prompts", s2, {"train_data": train, "eval_data": evals}, tmp_path / "c")
    assert summary["overlap_dropped"] == 1 and summary["train"] == 19


def test_unlabelled_eval_is_labelled_by_the_teacher(tmp_path: Path) -> None:
    from pipeline.stages.eval_set import EvalSetSettings

    prompts = tmp_path / "prompts"
    prompts.mkdir()
    _jsonl(prompts / "eval.jsonl", [{"id": "e1", "prompt": "charged twice", "reference": None},
                                    {"id": "e2", "prompt": "parcel late", "reference": None},
                                    {"id": "e3", "prompt": "app crashes", "reference": "technical"}])
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    _jsonl(teacher / "rows.jsonl", [
        {"id": "e1", "split": "eval", "sample": 0, "response": "Billing"},
        {"id": "e2", "split": "eval", "sample": 0, "response": "no idea"},  # not a label
        {"id": "e1", "split": "train", "sample": 0, "response": "shipping"}])  # another split
    summary = _run("eval_set", EvalSetSettings(task=TASK.spec),
                   {"prompts": prompts, "teacher": teacher}, tmp_path / "out")
    rows = read_rows(tmp_path / "out" / "eval.jsonl")
    assert [(r["id"], r["reference"], r["reference_source"]) for r in rows] == [
        ("e1", "billing", "teacher"), ("e3", "technical", "data")]
    assert summary == {"rows": 2, "references": "mixed", "from_teacher": 1,
                       "dropped_no_valid_teacher_answer": 1}


def test_teacher_answers_unlabelled_eval_prompts_but_filter_never_trains_on_them(
        tmp_path: Path) -> None:
    from pipeline.config import load_config
    from pipeline.filters import FilterSettings
    from pipeline.stages.teacher import TeacherSettings, _requests

    prompts = [{"id": "t1", "prompt": "a", "split": "train"}, {"id": "e1", "prompt": "b", "split": "eval"}]
    s = TeacherSettings(backend="llama_cpp", prompt=load_config(None).task.teacher_prompt,
                        max_tokens=8, temperature=0.0, n_samples=1, seed=0)
    assert [r.row_id for r in _requests(prompts, s)] == ["t1", "e1"]
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    _jsonl(teacher / "rows.jsonl", [
        {"id": "t1", "split": "train", "sample": 0, "prompt": "a", "response": "billing"},
        {"id": "e1", "split": "eval", "sample": 0, "prompt": "b", "response": "shipping"}])
    (teacher / "stats.json").write_text(json.dumps(  # what the teacher step writes
        {"rows": 2, "rows_this_run": 2, "failed": 0, "wall_s": 1.0, "prompt_tokens": 2,
         "prefill_tokens": 2, "completion_tokens": 2, "rows_per_min": None, "decode_tok_s": None}))
    summary = _run("filter", FilterSettings(task=TASK.spec, checks=["validator"]),
                   {"teacher": teacher}, tmp_path / "filter")
    assert summary["rows_in"] == 1
    assert [r["id"] for r in read_rows(tmp_path / "filter" / "kept.jsonl")] == ["t1"]


def test_eval_sets_are_scored_apart_and_the_primary_one_leads(tmp_path: Path) -> None:
    from pipeline.measure.bench import score_answers
    from pipeline.stages.prompts import PromptsSettings

    train = _jsonl(tmp_path / "train.jsonl", [{"id": f"t{i}", "prompt": f"q {i}"} for i in range(4)])
    evals = _jsonl(tmp_path / "eval.jsonl", [
        {"id": "g1", "prompt": "generated one", "reference": "billing", "kind": "generated"},
        {"id": "h1", "prompt": "written by hand", "reference": "billing", "kind": "hand"},
        {"id": "h2", "prompt": "also by hand", "reference": "shipping", "kind": "hand"}])
    spec = TASK.spec.model_copy(update={"primary_set": "hand"})
    s = PromptsSettings(task=spec, columns=Columns(set_field="kind"), has_eval=True, holdout=1,
                        max_train_rows=0, max_eval_rows=0)
    assert _run("prompts", s, {"train_data": train, "eval_data": evals},
                tmp_path / "a")["eval_sets"] == {"generated": 1, "hand": 2}
    rows = read_rows(tmp_path / "a" / "eval.jsonl")
    quality = score_answers(make_task(spec), ["billing", "billing", "billing"], rows)
    assert quality["eval_set"] == "hand" and quality["accuracy"] == 0.5  # the primary set's
    assert quality["sets"]["generated"]["accuracy"] == 1.0 and quality["sets"]["hand"]["rows"] == 2
    wrong = s.model_copy(update={"task": spec.model_copy(update={"primary_set": "typo"})})
    with pytest.raises(UserError, match="primary_set 'typo' is not an eval set .*generated, hand"):
        _run("prompts", wrong, {"train_data": train, "eval_data": evals}, tmp_path / "b")


def test_invented_spans_count_values_not_in_the_prompt() -> None:
    from pipeline.measure.quality import invented_spans

    prompts = ["Send 2 lamps to Rotterdam - Emeka Okafor", "Łódź, 3 chairs, Ana Núñez"]
    fields = ("name", "city")
    assert invented_spans([{"name": "emeka  okafor", "city": "ROTTERDAM"},
                           {"name": "Ana Núñez", "city": "łódź"}], prompts, fields) == 0.0
    assert invented_spans([{"name": "Ekkeka Okafor", "city": "Rotterdam"},  # garbled name
                           None], prompts, fields) == 0.5  # an invalid answer invents nothing
