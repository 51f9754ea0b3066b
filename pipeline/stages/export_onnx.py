"""Export stage (ONNX): HF folder -> onnxruntime-genai model folders, fp32 and quantized.

setup: the onnxruntime-genai model builder, run in one child process for both folders
       (pipeline.models.onnx_build) from the local HF folder only (no hub).
run:   build `onnx-fp32/` (the format's unquantized reference, like the GGUF path's F16) and
       `onnx-<precision>/` for the target: int4/int8 are weight-only MatMulNBits with the
       profile's block size and accuracy level (4 = int8 activations on CPU), fp16 for GPU
       providers (the CUDA graph also runs on the CPU provider: parity is checked without a
       GPU). Each folder holds model.onnx(+data), genai_config.json and the tokenizer
       with its chat template — what onnxruntime-genai loads — and is opened once to prove it.
Why the builder, not optimum-onnx + onnxruntime.quantization: measured side by side on the
default student (`python -m benchmarks.onnx_paths`, same int4 quantizer settings — RTN, block
16, accuracy_level 4 —, 60 eval prompts, 2 threads): equal task metric (field accuracy 0.860
both), but the builder's fused graph decodes 99.0 tok/s vs 55.5 and is 107 MB vs 219 MB; its
fp32 export is the torch student to the digit (KL 0.0000 vs 0.0064 for optimum's traced
graph). optimum-onnx also pins transformers<4.58 (a second environment here). The builder
writes the KV-cache graph, genai_config.json and MatMulNBits int4/int8 in one step.

Example:
    distill-edge build --target cpu-int4-onnx
    ls build/cache/export_onnx/*/onnx-int4/
"""

from __future__ import annotations

import shutil

from pipeline.cache import artifact_bytes
from pipeline.config import BuildConfig
from pipeline.formats import FORMATS
from pipeline.models.onnx_build import build_all, job
from pipeline.outputs import ExportSummary, carry_prompt_format
from pipeline.stage import Runtime, Settings, StageContext
from pipeline.targets import Target


class ExportOnnxSettings(Settings):
    format: str
    quant: str
    execution_provider: str
    block_size: int | None = None  # int4/int8 (MatMulNBits) only
    accuracy_level: int | None = None
    algo_config: str | None = None


class ExportOnnxStage:
    name = "export_onnx"
    libraries = ("onnxruntime-genai", "onnxruntime", "onnx", "transformers")
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> ExportOnnxSettings:
        quantizer = ({"block_size": target.block_size, "accuracy_level": target.accuracy_level,
                      "algo_config": target.algo_config} if target.quant in ("int4", "int8") else {})
        return ExportOnnxSettings(format=target.format, quant=target.quant,
                                  execution_provider=target.execution_provider, **quantizer)

    def runtime(self, config: BuildConfig, target: Target) -> Runtime:
        return Runtime()

    def run(self, ctx: StageContext[ExportOnnxSettings]) -> ExportSummary:
        from pipeline.runkit.run import open_onnx

        s, hf_dir = ctx.settings, ctx.inputs["model"]
        scratch = ctx.out_dir / "_builder_cache"  # the builder's temp files, removed below
        onnx = FORMATS["onnx"]  # this stage's format: artifact names from the table
        fp32 = ctx.out_dir / onnx.artifact(onnx.fp)
        jobs = [job(hf_dir, fp32, "fp32", "cpu", {}, scratch)]
        out = ctx.out_dir / onnx.artifact(s.quant)
        if s.quant != "fp32":
            extra = s.model_dump(include={"block_size", "accuracy_level", "algo_config"},
                                 exclude_unset=True)  # MatMulNBits options (int4/int8)
            jobs.append(job(hf_dir, out, s.quant, s.execution_provider, extra, scratch))
        build_all(jobs)  # one child process: the builder's imports are paid once
        shutil.rmtree(scratch, ignore_errors=True)
        carry_prompt_format(hf_dir, ctx.out_dir)
        # Proves the folder opens in the runtime (a CUDA export: on the CPU provider when
        # there is no GPU here — the same graph, which the bench then parity-checks on CPU).
        open_onnx(out, threads=1)
        size = artifact_bytes(out)
        ctx.log(f"wrote {out.name}/ ({size / 1e6:.1f} MB)")
        return ExportSummary(artifact=out.name, quant=s.quant, bytes=size,
                             reference_bytes=artifact_bytes(fp32))
