"""Damaged input files through the CLI: one line and exit 2, or accepted — never a traceback.

Each input kind a user hands the CLI (config, target file, JSONL, CSV and Parquet data, a
GGUF model file, a Hugging Face model folder's config/tokenizer/safetensors, a `datasets`
save_to_disk folder's Arrow/JSON files, a build's report.json, a bundle's generation.json)
is taken from a valid file — which the command must
accept, so a refusal is the damage's — and damaged the ways files get damaged: cut short at
several offsets, bytes flipped, bytes that are not UTF-8 inserted. The CLI runs in-process
(`pipeline.cli.main`), so anything other than a clean exit fails the test with its
traceback. A damaged file may still be valid (a config cut after a complete table): then
the command must simply succeed. A rejected build leaves nothing in its build folder.

Example:
    .venv/bin/python -m pytest -q tests/test_fuzz.py
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import cli

ROOT = Path(__file__).resolve().parents[1]


def damaged(data: bytes) -> Iterator[tuple[str, bytes]]:
    """The file as it is (which must be accepted: the command itself works), then damaged."""
    n = len(data)
    yield "intact", data
    for share in (0.1, 0.5, 0.9):
        yield f"cut{int(share * 100)}", data[: int(n * share)]
    flipped = bytearray(data)
    for i in range(3, n, max(1, n // 9)):
        flipped[i] ^= 0xA5
    yield "flipped", bytes(flipped)
    yield "not-utf8", data[: n // 2] + b"\xff\xfe\xe9" + data[n // 2:]


def _cli(argv: list[str], monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["distill-edge", *argv])
    capsys.readouterr()  # drop what preparing the case printed (datasets' progress bars)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    code = exc.value.code
    return (code if isinstance(code, int) else 0), capsys.readouterr().err


def _check(code: int, err: str) -> None:
    assert code in (0, 2), err
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("distill-edge: error: "), err


def _tiny_gguf(path: Path) -> None:
    """A small but complete GGUF (gguf-py's writer): header, keys, two tensors."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.arange(64 * 32, dtype=np.float32).reshape(64, 32))
    writer.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _hf_folder(folder: Path) -> None:
    """A small Hugging Face folder as resolve_model checks it: config, tokenizer, weights."""
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 32}))
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}))
    save_file({"embed": np.ones((64, 32), dtype=np.float32)}, str(folder / "model.safetensors"))


def _train_rows() -> list[dict[str, str]]:
    lines = (ROOT / "pipeline/tasks/data/extraction-train.jsonl").read_text().splitlines()[:20]
    return [{"prompt": json.loads(line)["prompt"]} for line in lines]


def _ds_folder(folder: Path) -> None:
    """A `datasets` save_to_disk folder: an Arrow file, dataset_info.json, state.json."""
    import datasets

    datasets.Dataset.from_list(_train_rows()).save_to_disk(str(folder))


DS_FILES = ("data-00000-of-00001.arrow", "dataset_info.json", "state.json")
FOLDERS = {"hf": _hf_folder, "ds": _ds_folder}  # kinds "<folder>-<file>": one file damaged


def _sources(tmp: Path) -> dict[str, tuple[bytes, str]]:
    """kind -> (a valid file's bytes, its file name)."""
    rows = _train_rows()
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=["prompt"])
    writer.writeheader()
    writer.writerows({"prompt": r["prompt"]} for r in rows)
    _tiny_gguf(tmp / "m.gguf")
    _hf_folder(tmp / "hf")
    _ds_folder(tmp / "ds")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": [r["prompt"] for r in rows]}), tmp / "train.parquet")
    from tests.test_report import fixture_report

    return {
        "config": ((ROOT / "pipeline/default.toml").read_bytes(), "c.toml"),
        "target": ((ROOT / "targets/cpu-int4.toml").read_bytes(), "cpu-int4.toml"),
        "jsonl": ("".join(json.dumps(r) + "\n" for r in rows).encode(), "train.jsonl"),
        "csv": (table.getvalue().encode(), "train.csv"),
        "parquet": ((tmp / "train.parquet").read_bytes(), "train.parquet"),
        "gguf": ((tmp / "m.gguf").read_bytes(), "student.gguf"),
        **{f"hf-{name}": ((tmp / "hf" / name).read_bytes(), name)
           for name in ("config.json", "tokenizer.json", "model.safetensors")},
        **{f"ds-{name}": ((tmp / "ds" / name).read_bytes(), name) for name in DS_FILES},
        "report": (json.dumps(fixture_report()).encode(), "report.json"),
        "bundle": (json.dumps({"format": "gguf", "model": "model.gguf", "system": "s",
                               "user_template": "{prompt}", "max_tokens": 8}).encode(),
                   "generation.json"),
    }


SMALL = '[teacher]\nmodel = "smollm2-135m-instruct-q4_1"\n'  # no 1.1 GB teacher to assemble


def _argv(kind: str, file: Path, build: Path) -> list[str]:
    """The command that reads `file` as `kind` (a build stops after its first step)."""
    small = file.parent / "small.toml"
    student = {"gguf": file, "hf": file.parent}.get(kind.split("-")[0])
    small.write_text(SMALL + (f'[student]\npath = "{student}"\n' if student
                              else '[student]\nmodel = "smollm2-135m-instruct-q4_1"\n'))
    build_args = ["--build-dir", str(build), "--until", "prompts"]
    if kind == "config":
        return ["build", "--config", str(file), *build_args]
    if kind == "target" or kind == "gguf" or kind.startswith("hf-"):
        return ["build", "--config", str(small), *build_args]
    if kind in ("jsonl", "csv", "parquet") or kind.startswith("ds-"):
        data = file.parent if kind.startswith("ds-") else file
        return ["build", "--config", str(small), "--train-data", str(data), *build_args]
    if kind == "report":
        return ["report", str(file.parent)]
    return ["run", str(file.parent), "hello"]  # bundle: no model file, so never runs one


def _listing(folder: Path) -> list[str]:
    """What a build left, less the lock and the memo of model files' sha256 (cache/models),
    which are not build outputs."""
    if not folder.exists():
        return []
    names = (str(p.relative_to(folder)) for p in folder.rglob("*"))
    return sorted(n for n in names if n != ".lock" and not n.startswith("cache/models")
                  and n != "cache")


KINDS = ("config", "target", "jsonl", "csv", "parquet", "gguf", "hf-config.json", "hf-tokenizer.json",
         "hf-model.safetensors", *(f"ds-{name}" for name in DS_FILES), "report", "bundle")


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_file_is_one_line_or_accepted(kind: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline import targets

    data, name = _sources(tmp_path)[kind]
    build = tmp_path / "build"  # one for every case: the teacher file is resolved once
    outcomes = {}
    for how, bad in damaged(data):
        case = tmp_path / how
        if (folder := kind.split("-")[0]) in FOLDERS:  # the rest intact, this file damaged
            FOLDERS[folder](case)
        case.mkdir(exist_ok=True)
        (case / name).write_bytes(bad)
        if kind == "target":
            monkeypatch.setattr(targets, "TARGETS_DIR", case)
        before = _listing(build)
        code, err = _cli(_argv(kind, case / name, build), monkeypatch, capsys)
        _check(code, err)
        if kind == "bundle" and how == "intact":
            assert err.strip().endswith("model.gguf is missing: the bundle is incomplete"), err
        if code == 2:  # refused before anything was built or published
            assert _listing(build) == before, how
        outcomes[how] = code
    # the command works on the intact file, so refusals are the damage's (the bundle has no
    # model file: intact, it reads its settings and stops at the model, exit 2)
    assert outcomes["intact"] == (2 if kind == "bundle" else 0), outcomes
    # the damage that cannot leave a valid file is always refused
    assert outcomes["not-utf8"] == 2 or kind == "gguf", outcomes
    if kind in ("gguf", "report", "jsonl", "parquet") or kind.split("-")[0] in FOLDERS:
        assert outcomes["cut50"] == 2, outcomes
