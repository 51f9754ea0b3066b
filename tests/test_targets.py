"""Target profiles are data: every file validates; bad ones are rejected by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import UserError
from pipeline.formats import GGUF_FTYPES, ONNX_PRECISIONS
from pipeline.targets import TARGETS_DIR, list_targets, load_target


def test_every_target_file_validates() -> None:
    names = list_targets()
    assert {"cpu-int4", "cpu-int8", "cpu-int4-onnx", "cpu-int8-onnx"} <= set(names)
    for name in names:
        target = load_target(name)
        assert target.name == name
        assert target.quant in (GGUF_FTYPES if target.format == "gguf" else ONNX_PRECISIONS)


def test_a_runtime_that_cannot_constrain_refuses_constrained(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from pipeline.formats import FORMATS

    # a format whose runtime has no grammar hook (every built-in one has one now)
    monkeypatch.setitem(FORMATS, "openvino", replace(FORMATS["openvino"], constrained_decoding=False))
    text = (TARGETS_DIR / "cpu-int8-openvino.toml").read_text().replace("cpu-int8-openvino", "mine")
    assert "constrained = true" in text
    (tmp_path / "mine.toml").write_text(text)
    with pytest.raises(UserError, match="the openvino runtime cannot constrain decoding yet "
                                        ".gguf and onnx can.; set constrained = false"):
        load_target("mine", tmp_path)


@pytest.mark.parametrize(("edit", "message"), [
    (('quant = "int4"', 'quant = "Q4_K_M"'), "quant: 'Q4_K_M' is not a onnx quantization"),
    (('runtime = "onnxruntime"', 'runtime = "llama.cpp"'),
     "runtime: 'llama.cpp' is not a onnx runtime; use one of onnxruntime"),
    (('threads = 2', 'threads = 2\ncalibration = "imatrix"'),
     "calibration: 'imatrix' is not a onnx calibration; use one of none"),
    (('threads = 2', 'threads = 2\nint4_ratio = 0.8'),
     "int4_ratio = 0.8: only an openvino int4 profile mixes int4 and int8"),
])
def test_quant_and_runtime_must_fit_the_format(tmp_path: Path, edit: tuple[str, str],
                                               message: str) -> None:
    text = (TARGETS_DIR / "cpu-int4-onnx.toml").read_text().replace("cpu-int4-onnx", "mine")
    (tmp_path / "mine.toml").write_text(text.replace(*edit))
    with pytest.raises(UserError, match=message):
        load_target("mine", tmp_path)


@pytest.mark.parametrize(("profile", "edit", "message"), [
    ("cpu-int4-onnx", 'encodings = ["int8"]', "encodings: the search covers GGUF types only so far"),
    ("cpu-int4", 'encodings = ["Q4_X"]', "encodings: 'Q4_X' is not a quantized gguf type"),
    ("cpu-int4", 'encodings = ["F16"]', "encodings: 'F16' is not a quantized gguf type"),
])
def test_an_encoding_search_names_quantized_gguf_types(tmp_path: Path, profile: str, edit: str,
                                                       message: str) -> None:
    text = (TARGETS_DIR / f"{profile}.toml").read_text().replace(profile, "mine")
    (tmp_path / "mine.toml").write_text(text.replace("threads = 2", f"threads = 2\n{edit}"))
    with pytest.raises(UserError, match=message):
        load_target("mine", tmp_path)


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
