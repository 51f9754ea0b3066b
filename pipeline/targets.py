"""Hardware target profiles: one flat TOML data file per profile in `targets/`.

A profile names its format, quantization, runtime, threads and bench settings. Loading
validates it (unknown keys are errors naming the key); an unknown profile name lists
the available ones.

Example:
    >>> from pipeline.targets import load_target, list_targets
    >>> "cpu-int4" in list_targets()
    True
    >>> t = load_target("cpu-int4-onnx"); t.quant, t.artifact(), t.artifact(fp=True)
    ('int4', 'onnx-int4', 'onnx-fp32')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from pipeline.config import parse_toml, validation_line
from pipeline.errors import UserError

# The repo's targets/ folder; DISTILL_EDGE_TARGETS points elsewhere (tests, users' own).
TARGETS_DIR = Path(os.environ.get("DISTILL_EDGE_TARGETS", Path(__file__).parents[1] / "targets"))

# llama.cpp quantization types this pipeline offers, as the names of llama_cpp's
# LLAMA_FTYPE_* constants (data, not code: add a row to offer another type).
GGUF_FTYPES: dict[str, str] = {
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "Q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
}

# onnxruntime-genai model builder precisions (its -p flag) -> the ONNX weights they give.
ONNX_PRECISIONS: dict[str, str] = {
    "int4": "MatMulNBits 4-bit weights (block-wise), fp32 activations or int8 (accuracy_level 4)",
    "int8": "MatMulNBits 8-bit weights",
    "fp16": "float16 (for GPU execution providers)",
    "fp32": "float32 (the exported reference)",
}

# Per format: which runtime runs it, and its unquantized export (the parity reference row).
FORMATS: dict[str, dict[str, str]] = {
    "gguf": {"runtime": "llama.cpp", "fp": "F16"},
    "onnx": {"runtime": "onnxruntime", "fp": "fp32"},
}


class Target(BaseModel):
    """One validated hardware profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    format: Literal["gguf", "onnx"]
    quant: str  # a GGUF type (GGUF_FTYPES) or an ONNX precision (ONNX_PRECISIONS)
    runtime: Literal["llama.cpp", "onnxruntime"]
    execution_provider: Literal["cpu", "cuda"] = "cpu"  # ONNX only
    block_size: int = Field(32, ge=16, le=256)  # ONNX int4/int8 (MatMulNBits) only
    accuracy_level: int = Field(4, ge=0, le=4)  # ONNX int4/int8: 4 = int8 activations (CPU)
    # ONNX int4/int8: the builder's weight quantizer; k_quant_mixed keeps the most sensitive
    # matmuls (lm_head, first/last layers, every third qkv/v/down) in int8, like Q4_K_M.
    algo_config: Literal["default", "rtn", "k_quant", "rtn_last", "k_quant_last",
                         "k_quant_mixed"] = "default"
    # GGUF only: "imatrix" quantizes with an importance matrix of the student on the task's
    # own kept teacher rows (llama.cpp's imatrix, computed in-process; see models/imatrix.py).
    calibration: Literal["none", "imatrix"] = "none"
    calibration_rows: int = Field(64, ge=1, le=4096)
    threads: int = Field(ge=1, le=256)
    n_ctx: int = Field(1024, ge=128)
    bench_warmup: int = Field(1, ge=0)
    # Where this profile's speed numbers come from, when that is not the hardware it names
    # (arm64-q4 is benchmarked on x86 here; gpu-fp16 on the CPU provider without a GPU).
    benchmarked_on: str = "this build machine"
    # Quality gate: a build that misses it exits 3 after writing the report.
    min_field_accuracy: float | None = Field(None, ge=0, le=1)  # of the shipped artifact
    max_quant_loss: float | None = Field(None, ge=0, le=1)  # shipped vs the fp32 student
    # Parity gate, shipped artifact vs the fp32 student: mean next-token KL on the scored
    # reference answers, and the share of eval prompts with an identical greedy answer.
    max_kl: float | None = Field(None, ge=0)
    min_greedy_agreement: float | None = Field(None, ge=0, le=1)

    @field_validator("quant")
    @classmethod
    def _quant_for_format(cls, quant: str, info: ValidationInfo) -> str:
        table = GGUF_FTYPES if info.data.get("format") == "gguf" else ONNX_PRECISIONS
        if quant not in table:
            raise ValueError(f"'{quant}' is not a {info.data.get('format')} quantization; "
                             f"use one of {', '.join(table)}")
        return quant

    @field_validator("runtime")
    @classmethod
    def _runtime_for_format(cls, runtime: str, info: ValidationInfo) -> str:
        fmt = info.data.get("format")
        if fmt in FORMATS and FORMATS[fmt]["runtime"] != runtime:
            raise ValueError(f"format {fmt} runs on runtime = \"{FORMATS[fmt]['runtime']}\"")
        return runtime

    @field_validator("calibration")
    @classmethod
    def _calibration_for_format(cls, calibration: str, info: ValidationInfo) -> str:
        if calibration != "none" and info.data.get("format") != "gguf":
            raise ValueError("calibration = \"imatrix\" is for format = \"gguf\" (ONNX int4 "
                             "here is weight-only, data-free)")
        return calibration

    def artifact(self, fp: bool = False) -> str:
        """File (GGUF) or folder (ONNX) name of the export: quantized, or its fp reference."""
        quant = FORMATS[self.format]["fp"] if fp else self.quant
        return f"model.{quant}.gguf" if self.format == "gguf" else f"onnx-{quant}"


def list_targets(targets_dir: Path | None = None) -> list[str]:
    """Names of the profiles in the targets folder, sorted."""
    folder = targets_dir or TARGETS_DIR
    return sorted(p.stem for p in folder.glob("*.toml"))


def load_target(name: str, targets_dir: Path | None = None) -> Target:
    """Load one profile by name; an unknown name lists the available ones."""
    folder = targets_dir or TARGETS_DIR
    path = folder / f"{name}.toml"
    if not path.is_file():
        available = ", ".join(list_targets(folder)) or "(none)"
        raise UserError(f"unknown target '{name}': available targets are {available}")
    data = parse_toml(path, "target")
    try:
        target = Target.model_validate(data)
    except ValidationError as exc:
        raise UserError(validation_line(exc, f"target {path}")) from None
    if target.name != name:
        raise UserError(f"target {path}: name = '{target.name}' must match the file name '{name}'")
    return target
