"""Damaged input files through the CLI: one line and exit 2, or accepted — never a traceback.

Each input kind a user hands the CLI (config, target file, JSONL, CSV and Parquet data, a
GGUF model file, a Hugging Face model folder's config/tokenizer/safetensors, a `datasets`
save_to_disk folder's Arrow/JSON files, a build's report.json, a bundle's generation.json, an
ONNX bundle's files: genai_config, graph, weights, tokenizer, chat template)
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
import shutil
import sys
from collections.abc import Callable, Iterator
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
ONNX_FILES = ("genai_config.json", "model.onnx", "model.onnx.data", "tokenizer.json",
              "tokenizer_config.json", "chat_template.jinja")
BUNDLE = {"format": "gguf", "model": "model.gguf", "system": "s", "user_template": "{prompt}",
          "max_tokens": 8}


def _onnx_bundle(export: Path) -> Callable[[Path], None]:
    """An ONNX bundle as `distill-edge run` reads it: the export's onnxruntime-genai folder
    (the tiny model's, int4) and its generation.json."""

    def make(folder: Path) -> None:
        shutil.copytree(export, folder, dirs_exist_ok=True)
        (folder / "generation.json").write_text(json.dumps(
            {**BUNDLE, "format": "onnx", "model": "model.onnx", "threads": 1}))

    return make


# kinds "<folder>-<file>": the folder intact but for that file
FOLDERS: dict[str, Callable[[Path], None]] = {"hf": _hf_folder, "ds": _ds_folder}


def _source(tmp: Path, kind: str, folders: dict[str, Callable[[Path], None]]) -> tuple[bytes, str]:
    """A valid file of `kind`: its bytes and its file name."""
    if (folder := kind.split("-")[0]) in folders:
        name = kind.split("-", 1)[1]
        folders[folder](tmp / folder)
        return (tmp / folder / name).read_bytes(), name
    rows = _train_rows()
    if kind == "csv":
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=["prompt"])
        writer.writeheader()
        writer.writerows({"prompt": r["prompt"]} for r in rows)
        return table.getvalue().encode(), "train.csv"
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"prompt": [r["prompt"] for r in rows]}), tmp / "train.parquet")
        return (tmp / "train.parquet").read_bytes(), "train.parquet"
    if kind == "gguf":
        _tiny_gguf(tmp / "m.gguf")
        return (tmp / "m.gguf").read_bytes(), "student.gguf"
    if kind == "report":
        from tests.test_report import fixture_report

        return json.dumps(fixture_report()).encode(), "report.json"
    return {
        "config": ((ROOT / "pipeline/default.toml").read_bytes(), "c.toml"),
        "target": ((ROOT / "targets/cpu-int4.toml").read_bytes(), "cpu-int4.toml"),
        "jsonl": ("".join(json.dumps(r) + "\n" for r in rows).encode(), "train.jsonl"),
        "bundle": (json.dumps(BUNDLE).encode(), "generation.json"),
    }[kind]


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
    return ["run", str(file.parent), "hello"]  # a bundle: the gguf one has no model file


def _listing(folder: Path) -> list[str]:
    """What a build left, less the lock and the memo of model files' sha256 (cache/models),
    which are not build outputs."""
    if not folder.exists():
        return []
    names = (str(p.relative_to(folder)) for p in folder.rglob("*"))
    return sorted(n for n in names if n != ".lock" and not n.startswith("cache/models")
                  and n != "cache")


KINDS = ("config", "target", "jsonl", "csv", "parquet", "gguf", "hf-config.json", "hf-tokenizer.json",
         "hf-model.safetensors", *(f"ds-{name}" for name in DS_FILES), "report", "bundle",
         *(f"onnx-{name}" for name in ONNX_FILES))
# files a runtime reads as bytes: a stray non-UTF-8 byte can leave them valid
BYTES = ("gguf", "onnx-model.onnx", "onnx-model.onnx.data", "onnx-chat_template.jinja")


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_file_is_one_line_or_accepted(kind: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str],
                                                request: pytest.FixtureRequest) -> None:
    from pipeline import targets

    folders = dict(FOLDERS)
    if kind.startswith("onnx-"):  # the tiny model's ONNX export, built once per run
        folders["onnx"] = _onnx_bundle(request.getfixturevalue("tiny_onnx")("int4")[0] / "onnx-int4")
    data, name = _source(tmp_path, kind, folders)
    build = tmp_path / "build"  # one for every case: the teacher file is resolved once
    outcomes = {}
    for how, bad in damaged(data):
        case = tmp_path / how
        if (folder := kind.split("-")[0]) in folders:  # the rest intact, this file damaged
            folders[folder](case)
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
    assert outcomes["not-utf8"] == 2 or kind in BYTES, outcomes
    if kind in ("gguf", "report", "jsonl", "parquet") or kind.split("-")[0] in folders:
        assert outcomes["cut50"] == 2, outcomes


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The write that fails is the step's last (its metadata): the step's folder goes, no
    committed entry, one line naming the file and the fix, exit 1."""
    import errno

    from pipeline import runner

    def full(path: Path, *_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(runner, "write_json_atomic", full)
    (tmp_path / "small.toml").write_text(SMALL + '[student]\nmodel = "smollm2-135m-instruct-q4_1"\n')
    build = tmp_path / "build"
    code, err = _cli(["build", "--config", str(tmp_path / "small.toml"), "--build-dir", str(build),
                      "--until", "prompts"], monkeypatch, capsys)
    last = err.strip().splitlines()[-1]  # after the build's progress lines: the error, one line
    assert code == 1 and err.count("error") == 1 and "Traceback" not in err, err
    assert last.startswith("distill-edge: error: No space left on device writing ") and "cache gc" in last
    assert list((build / "cache" / "prompts").iterdir()) == []
