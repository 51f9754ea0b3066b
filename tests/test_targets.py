"""Target profiles are data: every file validates; bad ones are rejected by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import UserError
from pipeline.targets import GGUF_FTYPES, TARGETS_DIR, list_targets, load_target


def test_every_target_file_validates() -> None:
    names = list_targets()
    assert {"cpu-int4", "cpu-int8"} <= set(names)
    for name in names:
        target = load_target(name)
        assert target.name == name
        assert target.quant in GGUF_FTYPES


def test_ftype_table_matches_llama_cpp() -> None:
    import llama_cpp

    for const in GGUF_FTYPES.values():
        assert isinstance(getattr(llama_cpp, const), int)


def test_unknown_target_lists_available() -> None:
    with pytest.raises(UserError, match="available targets are .*cpu-int4"):
        load_target("gpu-int2")


def test_unknown_key_in_target_rejected(tmp_path: Path) -> None:
    text = (TARGETS_DIR / "cpu-int8.toml").read_text().replace("cpu-int8", "mine")
    (tmp_path / "mine.toml").write_text(text + 'quantt = "Q4_0"\n')
    with pytest.raises(UserError, match="quantt: unknown key"):
        load_target("mine", tmp_path)


def test_target_name_must_match_file(tmp_path: Path) -> None:
    (tmp_path / "other.toml").write_text((TARGETS_DIR / "cpu-int8.toml").read_text())
    with pytest.raises(UserError, match="must match the file name"):
        load_target("other", tmp_path)
