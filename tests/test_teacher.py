"""Teacher rows survive a crash: a torn last line is dropped and redone, nothing duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


@pytest.mark.e2e
def test_kill_9_mid_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """SIGKILL the teacher stage mid-run, rerun it, and find every row exactly once."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[teacher]\nmodel = "smollm2-135m-instruct-q4_1"\nmax_tokens = 48\n'
                   '[student]\nmodel = "smollm2-135m-instruct-q4_1"\n[task]\nmax_train_rows = 30\n')
    args = [str(Path(sys.executable).with_name("distill-edge")), "build", "--config", str(cfg),
            "--build-dir", str(tmp_path / "b"), "--until", "teacher"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    partial_rows = 0
    while time.time() < deadline and proc.poll() is None:
        files = list((tmp_path / "b" / "cache" / "teacher").glob("*.partial/rows.jsonl"))
        partial_rows = files[0].read_text().count("\n") if files else 0
        if partial_rows >= 5:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the stage finished before it could be killed"
    assert 5 <= partial_rows < 30
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = next((tmp_path / "b" / "cache" / "teacher").glob("*[0-9a-f]/rows.jsonl"))
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 30
    stats = json.loads((out.parent / "stats.json").read_text())
    assert stats["rows_this_run"] <= 30 - partial_rows
