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
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipeline.config import parse_toml, validation_line
from pipeline.errors import UserError
from pipeline.formats import FORMATS, Format, format_of

# The repo's targets/ folder; DISTILL_EDGE_TARGETS points elsewhere (tests, users' own).
TARGETS_DIR = Path(os.environ.get("DISTILL_EDGE_TARGETS", Path(__file__).parents[1] / "targets"))


class Target(BaseModel):
    """One validated hardware profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str  # the profile's name (`make target=<name>`), the file's stem
    description: str  # one line for `distill-edge targets`
    format: str  # an entry of pipeline.formats.FORMATS ("gguf", "onnx")
    quant: str  # one of that format's types (GGUF_FTYPES, ONNX_PRECISIONS)
    runtime: str  # derived from the format when left out; if given, it must be the format's
    execution_provider: Literal["cpu", "cuda"] = "cpu"  # ONNX only
    block_size: int = Field(32, ge=16, le=256)  # ONNX int4/int8 (MatMulNBits), OpenVINO int4 group
    # OpenVINO int4: the share of weights NNCF compresses to int4, the most sensitive rest int8
    # (NNCF's `ratio`, optimum-cli's --ratio)
    int4_ratio: float = Field(1.0, gt=0, le=1)
    accuracy_level: int = Field(4, ge=0, le=4)  # ONNX int4/int8: 4 = int8 activations (CPU)
    # ONNX int4/int8: the builder's weight quantizer; k_quant_mixed keeps the most sensitive
    # matmuls (lm_head, first/last layers, every third qkv/v/down) in int8, like Q4_K_M.
    algo_config: Literal["default", "rtn", "k_quant", "rtn_last", "k_quant_last",
                         "k_quant_mixed"] = "default"
    # Data-aware quantization on the task's own kept teacher rows: GGUF "imatrix" (llama.cpp's
    # importance matrix, computed in-process; see models/imatrix.py); OpenVINO int4 "awq"
    # (NNCF's AWQ + scale estimation; see models/openvino_ir.py).
    calibration: str = "none"  # one of the format's calibrations
    calibration_rows: int = Field(64, ge=1, le=4096)  # kept teacher rows used for calibration
    # GGUF: other types to try besides `quant` (e.g. ["Q4_0", "IQ4_NL"]): the bench measures them
    # smallest-first by real bits per weight and ships the first whose decision passes
    encodings: list[str] = []
    # Answers decoded under the task's grammar (pipeline.constrain): the bench's shipped rows,
    # the gate and the bundle's run.py use it; the free twin rows are measured beside them.
    constrained: bool = False
    threads: int = Field(ge=1, le=256)  # CPU threads the artifact is benchmarked and shipped with
    n_ctx: int = Field(1024, ge=128)  # context the artifact is benchmarked and shipped with
    bench_warmup: int = Field(1, ge=0)  # untimed answers before the timed ones
    # Where this profile's speed numbers come from, when that is not the hardware it names
    # (arm64-q4 is benchmarked on x86 here; gpu-fp16 on the CPU provider without a GPU).
    benchmarked_on: str = "this build machine"
    # Quality gate: a build that misses it exits 3 after writing the report.
    min_quality: float | None = Field(None, ge=0, le=1)  # the task's primary metric, shipped artifact
    max_quant_loss: float | None = Field(None, ge=0, le=1)  # shipped vs the fp32 student
    # Parity gate, shipped artifact vs the fp32 student: mean next-token KL on the scored
    # reference answers, and the share of eval prompts with an identical greedy answer.
    max_kl: float | None = Field(None, ge=0)
    # share of eval answers identical to the reference's
    min_greedy_agreement: float | None = Field(None, ge=0, le=1)

    @field_validator("format")
    @classmethod
    def _known_format(cls, fmt: str) -> str:
        format_of(fmt)
        return fmt

    @field_validator("quant", "runtime", "execution_provider", "calibration")
    @classmethod
    def _fits_the_format(cls, value: str, info: ValidationInfo) -> str:
        """Each of these must be one the format's table entry offers (pipeline.formats)."""
        fmt = FORMATS.get(info.data.get("format", ""))
        if fmt is None:  # the format itself failed validation: that error is reported
            return value
        allowed = {"quant": tuple(fmt.quants), "runtime": (fmt.runtime,),
                   "execution_provider": fmt.execution_providers,
                   "calibration": fmt.calibrations}[str(info.field_name)]
        if value not in allowed:
            what = "quantization" if info.field_name == "quant" else str(info.field_name)
            raise ValueError(f"'{value}' is not a {fmt.name} {what}; use one of "
                             f"{', '.join(allowed)}"
                             + (" (or leave runtime out: it follows the format)"
                                if info.field_name == "runtime" else ""))
        return value

    @model_validator(mode="after")
    def _can_constrain(self) -> Target:
        if self.constrained and not self.fmt.constrained_decoding:
            raise ValueError(f"constrained = true: the {self.format} runtime cannot constrain "
                             "decoding yet (gguf and onnx can); set constrained = false")
        return self

    @model_validator(mode="after")
    def _encodings_are_gguf_types(self) -> Target:
        if self.encodings and self.format != "gguf":
            raise ValueError(f"encodings: the search covers GGUF types only so far; remove it from "
                             f"this {self.format} profile")
        if self.encodings and self.quant == self.fmt.fp:
            raise ValueError(f"encodings: quant = '{self.quant}' is unquantized; search from a "
                             "quantized type")
        bad = [q for q in self.encodings if q not in self.fmt.quants or q == self.fmt.fp]
        if bad:
            raise ValueError(f"encodings: '{bad[0]}' is not a quantized {self.format} type "
                             f"(one of {', '.join(q for q in self.fmt.quants if q != self.fmt.fp)})")
        return self

    def candidates(self) -> list[str]:
        """The types the bench may ship: `quant` and the `encodings`, once each."""
        return list(dict.fromkeys([self.quant, *self.encodings]))

    @model_validator(mode="after")
    def _ratio_is_openvino_int4(self) -> Target:
        if self.int4_ratio < 1 and (self.format, self.quant) != ("openvino", "int4"):
            raise ValueError(f"int4_ratio = {self.int4_ratio}: only an openvino int4 profile mixes "
                             "int4 and int8 this way; remove it (GGUF: pick a mixed type such "
                             "as Q4_K_M)")
        return self

    @model_validator(mode="before")
    @classmethod
    def _derive_runtime(cls, data: Any) -> Any:
        # the runtime follows the format: a profile may leave it out
        if isinstance(data, dict) and data.get("runtime") is None and data.get("format") in FORMATS:
            data = {**data, "runtime": FORMATS[data["format"]].runtime}
        return data

    @property
    def fmt(self) -> Format:
        """This profile's entry in the format table."""
        return FORMATS[self.format]

    def artifact(self, fp: bool = False) -> str:
        """File or folder name of the export: quantized, or its unquantized reference."""
        return self.fmt.artifact(self.fmt.fp if fp else self.quant)


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
