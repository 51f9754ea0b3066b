"""Hardware target profiles: one flat TOML data file per profile in `targets/`.

A profile names its format, quantization, runtime, threads and bench settings. Loading
validates it (unknown keys are errors naming the key); an unknown profile name lists
the available ones.

Example:
    >>> from pipeline.targets import load_target, list_targets
    >>> "cpu-int4" in list_targets()
    True
    >>> load_target("cpu-int4").quant
    'Q4_0'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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

QuantName = Literal["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_1", "Q4_0"]


class Target(BaseModel):
    """One validated hardware profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    format: Literal["gguf"]
    quant: QuantName
    runtime: Literal["llama.cpp"]
    threads: int = Field(ge=1, le=256)
    n_ctx: int = Field(1024, ge=128)
    bench_warmup: int = Field(1, ge=0)
    # Quality gate: a build that misses it exits 3 after writing the report.
    min_field_accuracy: float | None = Field(None, ge=0, le=1)  # of the shipped artifact
    max_quant_loss: float | None = Field(None, ge=0, le=1)  # shipped vs distilled F16 GGUF


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
