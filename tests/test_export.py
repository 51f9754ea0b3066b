"""A tiny HF model goes through llama.cpp's converter and quantizer and generates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.generation.llm import ChatRunner, open_gguf
from pipeline.prompts import ChatPrompt
from pipeline.stages.export_gguf import quantize


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_0"])
def test_tiny_export_loads_and_generates(tiny_f16: Path, tmp_path: Path, quant: str) -> None:
    out = tmp_path / f"tiny.{quant}.gguf"
    quantize(tiny_f16, out, quant, threads=1)
    assert out.stat().st_size < tiny_f16.stat().st_size
    llm = open_gguf(out, n_ctx=256, threads=1)
    assert llm.metadata.get("tokenizer.chat_template")  # template survived the conversion
    gen = ChatRunner(llm).chat("You extract orders.", "Ann Lee wants 2 lamps", max_tokens=8)
    assert gen.prompt_tokens > 10 and gen.completion_tokens >= 1
    assert gen.ttft_s > 0


def test_imatrix_quantization_uses_the_task_activations(tiny_hf: Path, tiny_f16: Path,
                                                        tmp_path: Path) -> None:
    """The importance matrix covers every matmul weight under its GGUF name (the tied head
    under token_embd), has llama-imatrix's shape (one value per input column), and changes
    what llama.cpp's quantizer writes; the result loads and generates."""
    from gguf import GGUFReader

    from pipeline.models import imatrix
    from pipeline.models.hf import load_tokenizer
    from pipeline.training.sft_data import encode_example

    tok = load_tokenizer(tiny_hf)
    texts = [encode_example(tok, ChatPrompt(system="You extract orders."), p, r)[0]
             for p, r in [("Ann Lee wants 2 lamps", '{"name":"Ann Lee"}'), ("hi", "hello")]]
    stats = imatrix.for_gguf(imatrix.collect(tiny_hf, texts, threads=1), tiny_f16)
    matmuls = {t.name for t in GGUFReader(tiny_f16).tensors if t.name.startswith("blk.")
               and len(t.shape) == 2}
    assert set(stats) == matmuls | {"token_embd.weight"}
    assert stats["blk.0.ffn_down.weight"].shape == (128,) and stats["blk.0.attn_q.weight"].shape == (64,)
    assert all((v >= 0).all() and v.sum() > 0 for v in stats.values())
    plain, calibrated = tmp_path / "plain.Q4_0.gguf", tmp_path / "imatrix.Q4_0.gguf"
    quantize(tiny_f16, plain, "Q4_0", threads=1)
    quantize(tiny_f16, calibrated, "Q4_0", threads=1, imatrix=stats)
    assert plain.read_bytes() != calibrated.read_bytes()
    gen = ChatRunner(open_gguf(calibrated, n_ctx=256, threads=1)).chat("Hi.", "Ann Lee", 4)
    assert gen.completion_tokens >= 1


def test_unreadable_gguf_is_a_user_error(tmp_path: Path) -> None:
    from pipeline.errors import UserError

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(UserError, match="cannot load GGUF model"):
        open_gguf(bad, n_ctx=128, threads=1)


@pytest.mark.parametrize("quant", ["int4", "int8"])
def test_onnx_export_stage_writes_loadable_folders(tiny_onnx: Callable[[str], tuple[Path, dict]],
                                                   quant: str) -> None:
    """The ONNX export stage writes fp32 + quantized onnxruntime-genai folders that load and
    generate; the quantized graph's matmuls are MatMulNBits with the profile's bits and block
    size; the builder's scratch files are gone."""
    import onnx
    import onnxruntime_genai as og

    from pipeline.measure.runtimes.onnx_genai import OnnxGenaiRuntime

    out, summary = tiny_onnx(quant)  # the stage, run on the tiny model with block size 32
    assert sorted(p.name for p in out.iterdir()) == ["onnx-fp32", f"onnx-{quant}"]
    assert summary["artifact"] == f"onnx-{quant}"
    graph = onnx.load(str(out / f"onnx-{quant}" / "model.onnx"), load_external_data=False).graph
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    attrs = {a.name: a.i for a in nbits[0].attribute}
    assert len(nbits) >= 2 * 4 + 1  # per layer: fused qkv, o, gate+up, down; then lm_head
    assert attrs["bits"] == int(quant[3:]) and attrs["block_size"] == 32
    assert attrs["accuracy_level"] == 4
    og.Model(str(out / "onnx-fp32"))
    gen = OnnxGenaiRuntime(str(out / f"onnx-{quant}"), n_ctx=1024, threads=1).chat(
        [{"role": "system", "content": "You extract orders."},
         {"role": "user", "content": "Ann Lee wants 2 lamps"}], 8)
    assert gen.prompt_tokens > 10 and gen.completion_tokens >= 1
