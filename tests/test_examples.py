"""Worked examples for the teacher (pipeline.tasks.examples): k per label, deterministic,
never an eval row; the student's prompt stays without them."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.errors import UserError
from pipeline.tasks.examples import choose

LABELS = ("billing", "refund", "delivery")


def _write(tmp_path: Path, rows: list[dict[str, str]], name: str) -> None:
    with (tmp_path / name).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["ticket_id", "body", "category"])
        writer.writeheader()
        writer.writerows(rows)


def _config(tmp_path: Path, k: int, extra: str = "") -> Path:
    train = [{"ticket_id": f"t{i}", "body": f"message {i}", "category": LABELS[i % 3]}
             for i in range(30)] + [{"ticket_id": "u", "body": "unlabelled", "category": ""}]
    _write(tmp_path, train, "train.csv")
    # the eval file repeats two train messages: they may never become examples
    _write(tmp_path, [{"ticket_id": "e0", "body": "message 0", "category": "billing"},
                      {"ticket_id": "e1", "body": "message 4", "category": "refund"}], "eval.csv")
    path = tmp_path / "c.toml"
    path.write_text(f'[task]\nname = "t"\nkind = "label"\nlabels = {list(LABELS)!r}\n'
                    'instructions = "Route it."\ntrain_data = "train.csv"\neval_data = "eval.csv"\n'
                    'id_field = "ticket_id"\nprompt_field = "body"\nreference_field = "category"\n'
                    f"worked_examples = {k}\n{extra}".replace("'", '"'))
    return path


def test_k_examples_per_label_from_train_never_from_eval(tmp_path: Path) -> None:
    task = load_config(_config(tmp_path, 2)).task
    shots = task.teacher_prompt.few_shot
    assert [s.assistant for s in shots] == [*LABELS, *LABELS]  # round-robin over the labels
    users = [s.user for s in shots]
    assert "message 0" not in users and "message 4" not in users and "unlabelled" not in users
    assert all(int(u.split()[1]) % 3 == LABELS.index(s.assistant) for u, s in zip(users, shots, strict=True))
    assert task.student_prompt.few_shot == ()  # the student keeps its short prompt
    assert load_config(_config(tmp_path, 2)).task.teacher_prompt == task.teacher_prompt  # fixed
    assert load_config(_config(tmp_path, 0)).task.teacher_prompt.few_shot == ()


def test_examples_data_is_used_and_must_carry_references(tmp_path: Path) -> None:
    _write(tmp_path, [{"ticket_id": "x", "body": "shown", "category": "delivery"}], "ex.csv")
    shots = load_config(_config(tmp_path, 1, 'examples_data = "ex.csv"\n')).task.teacher_prompt.few_shot
    assert [(s.user, s.assistant) for s in shots] == [("shown", "delivery")]
    _write(tmp_path, [{"ticket_id": "x", "body": "shown", "category": ""}], "ex.csv")
    with pytest.raises(UserError, match="worked_examples: no row of .*ex.csv carries a reference"):
        load_config(_config(tmp_path, 1, 'examples_data = "ex.csv"\n'))


def test_choose_without_labels_takes_k_labelled_rows() -> None:
    rows = [{"id": str(i), "prompt": f"p{i}", "reference": None if i == 0 else {"a": i}}
            for i in range(10)]
    chosen = choose(rows, 3)
    assert len(chosen) == 3 and all(r["reference"] is not None for r in chosen)
    assert chosen == choose(rows, 3)
