"""Artifact formats as data: one entry per format, read by targets, runner, export stages,
bench, bundle and the bundle's `run.py` — like gguf-py's tensor tables, knowledge in a table.

Each entry names its export stage (registered in `pipeline.stages`), its unquantized
reference artifact (the parity row), the quantization types it offers, how its artifacts
are named, the runtime adapter that measures it (`pipeline.measure.runtimes.RUNTIMES`), how
a bundle holds it and which runner in `pipeline/runkit/run.py` answers with it.

To add a format: one entry here, one export stage, one runtime adapter (README:
"Architecture"); `tests/test_architecture.py` registers a fake format this way.

Example:
    >>> from pipeline.formats import FORMATS
    >>> f = FORMATS["gguf"]; f.export_stage, f.artifact("Q4_K_M"), f.artifact(f.fp)
    ('export', 'model.Q4_K_M.gguf', 'model.F16.gguf')
    >>> FORMATS["onnx"].artifact("int4"), FORMATS["onnx"].adapter
    ('onnx-int4', 'onnxruntime')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

# llama.cpp quantization types offered, as the names of llama_cpp's LLAMA_FTYPE_* constants.
GGUF_FTYPES: dict[str, str] = {
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    # blocks of 32, non-linear 4-bit levels: fits rows K-quants cannot (576 = 18 x 32, not a
    # multiple of 256), so it stays ~4.5 bits per weight where Q4_K_M falls back to Q5_0/Q8_0
    "IQ4_NL": "LLAMA_FTYPE_MOSTLY_IQ4_NL",
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

# OpenVINO weight compression by NNCF (pipeline.models.openvino_ir) -> what it writes.
OPENVINO_WEIGHTS: dict[str, str] = {
    "int4": "NNCF int4 asymmetric weights in groups (the tied embedding / lm_head int8)",
    "int8": "NNCF int8 asymmetric weights, per output channel",
    "fp32": "float32 (the exported reference)",
}


@dataclass(frozen=True)
class Format:
    """Everything the pipeline knows about one artifact format."""

    name: str
    runtime: str  # the target file's `runtime` (validated against this, or derived from it)
    export_stage: str  # the registered stage that writes both artifacts below
    fp: str  # the unquantized reference's type: every export is held to the fp32 student
    quants: Mapping[str, str]  # offered types -> what they are
    artifact_name: str  # file or folder name, from "{quant}"
    adapter: str  # the runtime adapter that benchmarks it (pipeline.measure.runtimes)
    bundle_runner: str  # the runner in runkit.run.RUNNERS
    # "file": the artifact is copied as is; "folder": its files become the bundle's top level
    bundle_layout: Literal["file", "folder"] = "file"
    label: str = ""  # appended to quant names in report rows (" ONNX")
    calibrations: tuple[str, ...] = ("none",)  # data-aware quantization it supports
    execution_providers: tuple[str, ...] = ("cpu",)
    ollama_modelfile: bool = False  # the bundle also gets an Ollama Modelfile
    # its runtime adapter can decode under a task grammar (pipeline.constrain)
    constrained_decoding: bool = False
    notes: tuple[str, ...] = field(default=())  # model card lines; "{model}": the artifact

    def artifact(self, quant: str) -> str:
        return self.artifact_name.format(quant=quant)


FORMATS: dict[str, Format] = {}


def register_format(fmt: Format) -> Format:
    """Add a format to the table (the built-ins below; a plugin or test may add more)."""
    FORMATS[fmt.name] = fmt
    return fmt


register_format(Format(
    name="gguf", runtime="llama.cpp", export_stage="export", fp="F16", quants=GGUF_FTYPES,
    artifact_name="model.{quant}.gguf", adapter="llama_cpp", bundle_runner="gguf",
    calibrations=("none", "imatrix"), ollama_modelfile=True, constrained_decoding=True,
    notes=("Ollama: `ollama create my-student -f Modelfile`.",
           "llama.cpp: `llama-cli -m {model} -sys \"$(jq -r .system generation.json)\"`.")))
register_format(Format(
    name="onnx", runtime="onnxruntime", export_stage="export_onnx", fp="fp32",
    quants=ONNX_PRECISIONS, artifact_name="onnx-{quant}", adapter="onnxruntime",
    bundle_runner="onnx", bundle_layout="folder", label=" ONNX",
    execution_providers=("cpu", "cuda"), constrained_decoding=True,
    notes=("onnxruntime-genai loads this folder as is (`og.Model(\".\")`).",)))
register_format(Format(
    name="openvino", runtime="openvino", export_stage="export_openvino", fp="fp32",
    quants=OPENVINO_WEIGHTS, artifact_name="openvino-{quant}", adapter="openvino",
    bundle_runner="openvino", bundle_layout="folder", label=" OpenVINO",
    calibrations=("none", "awq"), constrained_decoding=True,  # structured output (xgrammar)
    notes=("openvino-genai loads this folder as is "
           "(`openvino_genai.LLMPipeline(\".\", \"CPU\")`).",)))


def format_of(name: str) -> Format:
    """The table entry; an unknown name lists the known ones."""
    if name not in FORMATS:
        raise ValueError(f"unknown format '{name}': use one of {', '.join(FORMATS)}")
    return FORMATS[name]
