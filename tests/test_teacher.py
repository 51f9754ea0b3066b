"""Teacher rows survive a crash: a torn last line is dropped and redone, nothing duplicated."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.stages.teacher import _done_rows


def test_torn_tail_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    good = [{"id": "a", "response": "x"}, {"id": "b", "response": "y"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in good) + '{"id": "c", "resp')
    done = _done_rows(path)
    assert list(done) == ["a", "b"]
    assert path.read_text().count("\n") == 2 and path.read_text().endswith("\n")


def test_no_file_means_nothing_done(tmp_path: Path) -> None:
    assert _done_rows(tmp_path / "rows.jsonl") == {}
