"""What a quantized artifact really holds: tensors and parameters per weight type, bits per weight.

llama.cpp quietly falls back to other types for tensors whose rows are not a multiple of the
type's block (256 for the K-quants): SmolLM2's width is 576, so most of a "Q4_K_M" file is
Q5_0/Q8_0 and its real size per weight is far from 4.5 bits. The file name says what was
asked for; this reads what was written (ggml's own GGUF reader, no weights loaded into RAM).
An OpenVINO IR is read the same way (its weight constants by element type): NNCF keeps
tensors it will not compress (the tied embedding / lm_head of an int4 model) at int8.

Example:
    python -c "from pipeline.measure.quant_mix import gguf_mix; \
        print(gguf_mix('build/cpu-int4/model.Q4_K_M.gguf', 'Q4_K_M'))"
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NotRequired, TypedDict

MOSTLY = 0.5  # the requested type should cover at least this share of the weights


class QuantMix(TypedDict):
    """What a quantized artifact holds (gguf_mix, openvino_mix)."""

    requested: str  # the quant asked for
    requested_type: str  # the tensor / element type it names
    requested_share: float  # share of the parameters stored at that type
    mostly_requested: bool
    bits_per_weight: float
    params: int
    types: dict[str, dict[str, int]]  # per type: tensors, params, bytes
    scales_excluded: NotRequired[bool]  # OpenVINO: the scales are separate constants


def requested_type(quant: str) -> str:
    """The ggml tensor type a llama.cpp file type asks for: Q4_K_M -> Q4_K, Q8_0 -> Q8_0."""
    # only the K-quant file types are mixes named by a size suffix; IQ2_XXS is a tensor type
    return re.sub(r"^(Q\d_K)_(S|M|L|XL)$", r"\1", quant.upper())


def gguf_mix(path: Path | str, quant: str) -> QuantMix:
    """Per ggml type: tensors, parameters, bytes; the effective bits per weight; and whether
    the requested type covers at least half of the parameters."""
    from pipeline.models.gguf_info import read_gguf

    types: dict[str, dict[str, int]] = {}
    for tensor in read_gguf(path).tensors:
        entry = types.setdefault(tensor.type, {"tensors": 0, "params": 0, "bytes": 0})
        entry["tensors"] += 1
        entry["params"] += tensor.n_elements
        entry["bytes"] += tensor.n_bytes
    return _summary(types, quant, requested_type(quant))


def _summary(types: dict[str, dict[str, int]], quant: str, wanted: str,
             scales_excluded: bool = False) -> QuantMix:
    """Shares, bits per weight and the requested type's coverage of per-type counts."""
    params = sum(t["params"] for t in types.values()) or 1
    share = types.get(wanted, {}).get("params", 0) / params
    mix = QuantMix(requested=quant, requested_type=wanted, requested_share=round(share, 4),
                   mostly_requested=share >= MOSTLY,
                   bits_per_weight=round(8 * sum(t["bytes"] for t in types.values()) / params, 3),
                   params=params,
                   types=dict(sorted(types.items(), key=lambda kv: -kv[1]["params"])))
    if scales_excluded:
        mix["scales_excluded"] = True
    return mix


# OpenVINO element types per requested weight compression (NNCF's asymmetric modes write
# unsigned weights); and their bits per weight, without scales
OPENVINO_TYPES = {"int4": "u4", "int8": "u8", "fp32": "f32", "fp16": "f16"}
OPENVINO_BITS = {"u4": 4, "i4": 4, "u8": 8, "i8": 8, "f16": 16, "bf16": 16, "f32": 32}


def openvino_mix(folder: Path | str, quant: str) -> QuantMix:
    """The same facts for an OpenVINO IR folder (bits per weight without the scales, which
    the IR keeps as separate small constants)."""
    from pipeline.models.openvino_ir import weight_types

    types = weight_types(Path(folder))
    for name, entry in types.items():
        entry["bytes"] = entry["params"] * OPENVINO_BITS.get(name, 32) // 8
    return _summary(types, quant, OPENVINO_TYPES.get(quant, quant), scales_excluded=True)


def mix_line(mix: Mapping[str, Any]) -> str:
    """The mix in one sentence, for the report and the model card."""
    parts = ", ".join(f"{name} {t['tensors']} tensors / {100 * t['params'] / mix['params']:.1f}% "
                      "of weights" for name, t in mix["types"].items())
    bits = f"{mix['bits_per_weight']} bits per weight" + (
        " (scales not counted)" if mix.get("scales_excluded") else "")
    line = f"{mix['requested']} file: {bits}; {parts}."
    if not mix["mostly_requested"]:
        line += (f" Only {100 * mix['requested_share']:.0f}% of the weights are "
                 f"{mix['requested_type']}: " + (
                     "NNCF kept the rest at other types." if mix.get("scales_excluded") else
                     "llama.cpp fell back to other types for tensors whose rows are not a "
                     "multiple of its block size."))
    return line
