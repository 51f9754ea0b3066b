"""Offline weights: catalog lookups, sha256 checks, and one-line errors for bad paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import UserError
from pipeline.models.weights import CATALOG, resolve_model, sha256_file


def test_smollm_resolves_and_matches_its_sha(smollm_gguf: Path) -> None:
    assert smollm_gguf.is_file()
    assert sha256_file(smollm_gguf) == CATALOG["smollm2-135m-instruct-q4_1"].sha256


def test_unknown_catalog_name(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown model 'gpt-9'"):
        resolve_model("gpt-9", None, tmp_path)


def test_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="model path not found"):
        resolve_model(None, str(tmp_path / "missing.gguf"), tmp_path)
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 a zip, not a gguf")
    with pytest.raises(UserError, match="not a GGUF file"):
        resolve_model(None, str(not_gguf), tmp_path)
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(UserError, match="no .safetensors"):
        resolve_model(None, str(folder), tmp_path)


def test_digest_is_remembered(tmp_path: Path) -> None:
    from pipeline.models.weights import file_digest

    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    first = file_digest(f, tmp_path / "cache")
    assert first == sha256_file(f)
    assert (tmp_path / "cache" / "digests.json").is_file()
    f.write_bytes(b"abcd")  # size changes: re-hashed
    assert file_digest(f, tmp_path / "cache") != first
