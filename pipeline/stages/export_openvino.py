"""Export stage (OpenVINO): HF folder -> openvino-genai model folders, fp32 and compressed.

setup: the trained (or base) HF folder; transformers' OpenVINO exporter and NNCF
       (pipeline.models.openvino_ir).
run:   `openvino-fp32/` (the format's unquantized reference, like the GGUF path's F16) and
       `openvino-<quant>/` for the target: int8 / int4 weight compression by NNCF, int4 in
       groups of the profile's `block_size`, `int4_ratio` of the weights int4 and the most
       sensitive rest int8 — data-aware with `calibration = "awq"` (NNCF's
       AWQ + scale estimation on the task's kept teacher rows, like the GGUF imatrix). Each
       folder holds openvino_model.xml/.bin (a stateful IR: the KV cache lives in OpenVINO
       state), the converted tokenizer and detokenizer and the HF text files — what
       openvino-genai's LLMPipeline loads — and is opened once in it to prove that. The fp32
       IR is checked against the torch model here (max |logit difference| on a prompt, the
       optimum exporters' check); the compressed one is held to the fp32 student by the
       bench's parity gate.
cleanup: the weight types actually written (pipeline.measure.quant_mix reads them again
       for the report).

Example:
    distill-edge build --target cpu-int4-openvino
    ls build/cache/export_openvino/*/openvino-int4/
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.cache import artifact_bytes
from pipeline.config import BuildConfig
from pipeline.errors import UserError
from pipeline.formats import FORMATS
from pipeline.outputs import KEPT, ExportSummary, carry_prompt_format
from pipeline.prompts import ChatPrompt
from pipeline.stage import Runtime, Settings, StageContext
from pipeline.targets import Target

# max |logit difference| the fp32 IR may have against torch on the check prompt: float32
# reorderings give ~1e-4 on the real 135M student; a wrong graph gives units
MAX_FP32_DIFF = 1e-2


class ExportOpenVinoSettings(Settings):
    format: str
    quant: str
    group_size: int  # int4 only: NNCF's group of weights sharing one scale
    ratio: float = 1.0  # int4 only: share of weights in int4, the most sensitive rest int8
    # calibration = "awq" (int4 only): the kept teacher rows, in the student's prompt, drive
    # NNCF's AWQ and scale estimation
    calibration: str | None = None
    calibration_rows: int | None = None
    prompt: ChatPrompt | None = None


def _texts(ctx: StageContext[ExportOpenVinoSettings]) -> list[list[int]] | None:
    """Token ids of the first calibration_rows kept teacher rows, as the student sees them."""
    if ctx.settings.calibration != "awq":
        return None
    from pipeline.models.hf import load_tokenizer
    from pipeline.training.sft_data import calibration_texts

    s = ctx.settings
    texts = calibration_texts(load_tokenizer(ctx.inputs["model"]), s.prompt,
                              ctx.inputs["calibration"] / KEPT, s.calibration_rows)
    ctx.log(f"int4 calibration (AWQ + scale estimation): {len(texts)} task rows")
    return texts


def check_fp32(model: Any, hf_dir: Path, folder: Path) -> float:
    """Max |logit difference| between the fp32 IR (run by OpenVINO, f32) and the torch model
    read from `hf_dir`, on one short prompt; UserError past MAX_FP32_DIFF."""
    import numpy as np
    import torch

    from pipeline.measure.runtimes.openvino_genai import compile_ir, ir_logits

    tokens = [int(t) for t in torch.arange(1, 17) * 37 % model.config.vocab_size]
    with torch.no_grad():
        want = model(input_ids=torch.tensor([tokens])).logits[0].numpy()
    diff = float(np.abs(ir_logits(compile_ir(folder, threads=1), tokens) - want).max())
    if diff > MAX_FP32_DIFF:
        raise UserError(f"the OpenVINO fp32 export of {hf_dir} differs from the torch model by "
                        f"{diff:.3g} in logits (limit {MAX_FP32_DIFF}): this architecture does "
                        "not export correctly; use a gguf or onnx target")
    return diff


class ExportOpenVinoStage:
    name = "export_openvino"
    libraries = ("openvino", "openvino-genai", "openvino-tokenizers", "nncf", "transformers")
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> ExportOpenVinoSettings:
        plain = ExportOpenVinoSettings(format=target.format, quant=target.quant,
                                       group_size=target.block_size, ratio=target.int4_ratio)
        if target.calibration == "awq" and target.quant == "int4":
            return plain.model_copy(update={"calibration": "awq", "prompt": config.task.student_prompt,
                                            "calibration_rows": target.calibration_rows})
        return plain

    def runtime(self, config: BuildConfig, target: Target) -> Runtime:
        return Runtime()

    def run(self, ctx: StageContext[ExportOpenVinoSettings]) -> ExportSummary:
        from pipeline.measure.quant_mix import openvino_mix
        from pipeline.models.openvino_ir import export_folder, load_model
        from pipeline.runkit.run import open_openvino

        s, hf_dir = ctx.settings, ctx.inputs["model"]
        fmt = FORMATS["openvino"]  # this stage's format: artifact names from the table
        fp32, out = ctx.out_dir / fmt.artifact(fmt.fp), ctx.out_dir / fmt.artifact(s.quant)
        model = load_model(hf_dir)  # every folder is traced from it, and the check runs it
        export_folder(model, hf_dir, fp32, fmt.fp, s.group_size)
        diff = check_fp32(model, hf_dir, fp32)
        ctx.log(f"{fp32.name}: max |logit diff| vs torch {diff:.2e}")
        if s.quant != fmt.fp:
            texts = _texts(ctx)
            if texts:  # what the data-aware compression saw
                (ctx.out_dir / "calibration.json").write_text(json.dumps(
                    {"method": "awq+scale_estimation", "rows": len(texts),
                     "tokens": sum(map(len, texts))}) + "\n")
            export_folder(model, hf_dir, out, s.quant, s.group_size, texts, s.ratio)
        carry_prompt_format(hf_dir, ctx.out_dir)
        open_openvino(out, threads=1)  # proves the folder loads in openvino-genai
        mix = openvino_mix(out, s.quant)
        size = artifact_bytes(out)
        ctx.log(f"wrote {out.name}/ ({size / 1e6:.1f} MB; {mix['requested_share']:.0%} of "
                f"weights {mix['requested_type']})")
        return ExportSummary(artifact=out.name, quant=s.quant, bytes=size,
                             reference_bytes=artifact_bytes(fp32), max_logit_diff=diff,
                             bits_per_weight=mix["bits_per_weight"], weight_types=mix["types"])

