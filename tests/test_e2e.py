"""End to end on the smallest real model: build, rebuild from cache, second target, bad input.

SmolLM2-135M plays both teacher and student on a handful of prompts: this checks the
mechanics (every stage, caching, publishing), not the quality of the default build.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

TINY_CONFIG = """
[teacher]
model = "smollm2-135m-instruct-q4_1"
max_tokens = 64
[student]
model = "smollm2-135m-instruct-q4_1"
[task]
max_train_rows = 6
max_eval_rows = 3
[distill]
epochs = 1
batch_size = 4
bf16 = true
[bench]
max_tokens = 48
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("e2e")
    cfg = root / "tiny.toml"
    cfg.write_text(TINY_CONFIG)
    build = root / "build"
    proc = run_cli("build", "--config", str(cfg), "--target", "cpu-int4", "--build-dir", str(build))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cfg, build


def _steps(build: Path, target: str) -> dict[str, bool]:
    manifest = json.loads((build / target / "manifest.json").read_text())
    return {s["step"]: s["cache_hit"] for s in manifest["steps"]}


def test_first_build_publishes_everything(built: tuple[Path, Path]) -> None:
    _, build = built
    out = build / "cpu-int4"
    names = {p.name for p in out.iterdir()}
    assert {"model.Q4_K_M.gguf", "prompt_format.json", "report.md", "report.json",
            "manifest.json"} <= names
    assert not any(_steps(build, "cpu-int4").values())
    report = json.loads((out / "report.json").read_text())
    roles = [r["role"] for r in report["bench"]["rows"]]
    assert roles == ["teacher", "base", "base_fewshot", "distilled_fp", "distilled"]
    for row in report["bench"]["rows"]:
        assert row["decode_tok_s"] > 0 and row["file_mb"] > 0 and 0 <= row["field_accuracy"] <= 1
    manifest = json.loads((out / "manifest.json").read_text())
    export = next(s for s in manifest["steps"] if s["step"] == "export")
    gguf = next(f for f in export["files"] if f["path"] == "model.Q4_K_M.gguf")
    assert len(gguf["sha256"]) == 64 and gguf["bytes"] == (out / "model.Q4_K_M.gguf").stat().st_size
    assert "| distilled Q4_K_M |" in (out / "report.md").read_text()


def test_published_student_answers_with_its_prompt_format(built: tuple[Path, Path]) -> None:
    from pipeline.llm import ChatRunner, open_gguf

    out = built[1] / "cpu-int4"
    fmt = json.loads((out / "prompt_format.json").read_text())
    runner = ChatRunner(open_gguf(out / "model.Q4_K_M.gguf", n_ctx=512, threads=2))
    gen = runner.chat(fmt["system"], fmt["user_template"].format(prompt="Ann Lee wants 2 lamps"), 16)
    assert gen.completion_tokens > 0


def test_rebuild_is_all_cache_hits(built: tuple[Path, Path]) -> None:
    cfg, build = built
    proc = run_cli("build", "--config", str(cfg), "--target", "cpu-int4", "--build-dir", str(build))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(_steps(build, "cpu-int4").values())


def test_second_target_reuses_the_student(built: tuple[Path, Path]) -> None:
    cfg, build = built
    proc = run_cli("build", "--config", str(cfg), "--target", "cpu-int8", "--build-dir", str(build))
    assert proc.returncode == 0, proc.stderr[-2000:]
    hits = _steps(build, "cpu-int8")
    assert all(hits[s] for s in ("teacher", "filter", "student_base", "distill"))
    assert not any(hits[s] for s in ("export_base", "export", "bench", "report"))
    assert (build / "cpu-int8" / "model.Q8_0.gguf").is_file()


def test_empty_prompt_file_fails_cleanly(built: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, build = built
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    before = sorted(p.name for p in build.rglob("*"))
    proc = run_cli("build", "--config", str(cfg), "--target", "cpu-int4", "--build-dir",
                   str(build), "--train-data", str(empty))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"distill-edge: error: train data {empty} has no rows: give a " \
                                  "JSONL file with one prompt per line"
    assert sorted(p.name for p in build.rglob("*")) == before


def test_missing_model_file_fails_cleanly(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY_CONFIG.replace('model = "smollm2-135m-instruct-q4_1"\nmax_tokens',
                                       f'path = "{tmp_path}/gone.gguf"\nmax_tokens'))
    proc = run_cli("build", "--config", str(cfg), "--build-dir", str(tmp_path / "b"))
    assert proc.returncode == 2
    assert "model path not found" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()
