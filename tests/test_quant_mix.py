"""The real type mix of a GGUF or an OpenVINO IR, read from the file: counts, shares, bits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.measure.quant_mix import gguf_mix, mix_line, requested_type


def _gguf(path: Path) -> Path:
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_tensor("big", np.zeros((64, 32), dtype=np.float16))  # 2048 weights, 16 bits
    writer.add_tensor("small", np.zeros((32, 32), dtype=np.float32))  # 1024 weights, 32 bits
    writer.add_tensor("norm", np.zeros(32, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_mix_by_hand(tmp_path: Path) -> None:
    mix = gguf_mix(_gguf(tmp_path / "m.gguf"), "F16")
    assert mix["types"]["F16"] == {"tensors": 1, "params": 2048, "bytes": 4096}
    assert mix["types"]["F32"] == {"tensors": 2, "params": 1056, "bytes": 4224}
    assert mix["bits_per_weight"] == round(8 * (4096 + 4224) / 3104, 3)
    assert mix["requested_share"] == round(2048 / 3104, 4) and mix["mostly_requested"]
    mostly_not = gguf_mix(tmp_path / "m.gguf", "Q4_K_M")
    assert mostly_not["requested_type"] == "Q4_K" and not mostly_not["mostly_requested"]
    assert "Only 0% of the weights are Q4_K" in mix_line(mostly_not)


def test_requested_type_of_llama_cpp_file_types() -> None:
    assert [requested_type(q) for q in ("Q4_K_M", "Q5_K_S", "Q8_0", "Q4_0", "IQ2_XXS")] == [
        "Q4_K", "Q5_K", "Q8_0", "Q4_0", "IQ2_XXS"]


def test_openvino_mix_reads_the_ir_weight_types(tmp_path: Path) -> None:
    """An IR with an int4 weight (its per-group scale beside it), an int8 weight and a float
    vector: the weights are counted by element type, the scale and the vector are not."""
    import openvino as ov
    import openvino.opset13 as ops

    from pipeline.measure.quant_mix import openvino_mix

    def const(kind: ov.Type, shape: list[int]) -> ov.Node:
        return ov.op.Constant(kind, ov.Shape(shape), [0] * int(np.prod(shape)))

    nodes = [const(ov.Type.u4, [64, 2, 32]), const(ov.Type.f32, [64, 2, 1]),  # weight, scale
             const(ov.Type.u8, [32, 64]), const(ov.Type.f32, [2048])]
    results = [ops.result(ops.convert(n, "f32")) for n in nodes]
    (tmp_path / "ir").mkdir()
    ov.save_model(ov.Model(results, [ops.parameter([1], np.float32)]),
                  str(tmp_path / "ir" / "openvino_model.xml"))
    mix = openvino_mix(tmp_path / "ir", "int4")
    assert mix["types"] == {"u4": {"tensors": 1, "params": 4096, "bytes": 2048},
                            "u8": {"tensors": 1, "params": 2048, "bytes": 2048}}
    assert mix["requested_type"] == "u4" and mix["requested_share"] == round(4096 / 6144, 4)
    assert mix["bits_per_weight"] == round(8 * 4096 / 6144, 3) and mix["mostly_requested"]
    assert "bits per weight (scales not counted)" in mix_line(mix)
