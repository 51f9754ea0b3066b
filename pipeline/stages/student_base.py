"""Student-base stage: turn the configured student (GGUF or HF folder) into a plain HF folder.

setup: load the student with transformers (a GGUF is dequantized to fp32).
run:   fix the tokenizer, save fp32 safetensors + tokenizer + chat template.
The distill stage trains from this folder, and the same folder goes through the export
stage undistilled, so the report compares like with like.

Example:
    distill-edge build --target cpu-int4
    ls build/cache/student_base/*/
"""

from __future__ import annotations

from pipeline.config import BuildConfig
from pipeline.outputs import ModelInfo
from pipeline.stage import Runtime, Settings, StageContext
from pipeline.targets import Target


class StudentBaseSettings(Settings):
    dtype: str  # the HF copy's dtype (fp32: the reference every export is held to)


class StudentBaseStage:
    name = "student_base"
    libraries = ("torch", "transformers", "gguf", "safetensors", "tokenizers")
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> StudentBaseSettings:
        return StudentBaseSettings(dtype="float32")

    def runtime(self, config: BuildConfig, target: Target) -> Runtime:
        return Runtime()

    def run(self, ctx: StageContext[StudentBaseSettings]) -> ModelInfo:
        from pipeline.models.hf import save_hf_copy

        info = ModelInfo(**save_hf_copy(ctx.inputs["student_model"], ctx.out_dir))
        ctx.log(f"saved {info.architecture} with {info.parameters / 1e6:.1f}M parameters")
        return info
