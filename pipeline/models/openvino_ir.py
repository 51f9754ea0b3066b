"""OpenVINO export: an HF folder -> an openvino-genai model folder, fp32 or NNCF-compressed.

The exporter is transformers' own (`transformers.exporters.OpenVINOExporter`, the in-stack
successor of optimum-intel, which pins transformers < 5.6 and cannot install here):
- the model is traced on one decode step *with* a KV cache and an explicit attention mask,
  so the IR is stateful (the cache lives in OpenVINO state; inputs input_ids,
  attention_mask, position_ids, beam_idx) — what openvino-genai's `LLMPipeline` runs.
  (`export_for_generation` writes a decode graph without attention_mask, which
  LLMPipeline refuses: "Port for tensor name attention_mask was not found".) A batch of
  2 and 3 new tokens keep the batch and sequence axes dynamic.
- int8 / int4 are NNCF weight compression inside the exporter (`NNCFOpenVINOQuantizer`):
  int8 per output channel (asymmetric); int4 asymmetric in groups of `group_size` (NNCF's
  default 128 does not divide SmolLM2's width 576: InvalidGroupSizeError), with NNCF's own
  backup: the tied embedding / lm_head stays int8. Activations stay float. With calibration
  texts (the task's kept teacher rows, like the GGUF imatrix) int4 is data-aware: NNCF's AWQ
  and scale estimation.
- the text side: the HF tokenizer files beside it and openvino-tokenizers' converted
  tokenizer/detokenizer (openvino_tokenizer.xml, openvino_detokenizer.xml), whose chat
  template is the HF one.

Example:
    python -c "from pathlib import Path; from pipeline.models.openvino_ir import *; \
        hf = Path('build/cache/distill/<key>'); \
        export_folder(load_model(hf), hf, Path('/tmp/openvino-int4'), 'int4', 32)"
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

# NNCF weight compression per quantization name (None: the fp32 reference)
MODES: dict[str, str | None] = {"fp32": None, "int8": "INT8_ASYM", "int4": "INT4_ASYM"}
MODEL_XML = "openvino_model.xml"
# the HF files openvino-genai reads beside the IR (generation defaults, eos ids) and the
# bench's HF tokenizer (the chat template every runtime shares)
TEXT_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "chat_template.jinja", "vocab.json", "merges.txt")


def _sample(model: Any) -> dict[str, Any]:
    """Forward kwargs of one decode step after a 4-token cache, batch 2 and 3 new tokens (so
    no axis is specialized to 0/1 by the tracer); token ids are arbitrary, only shapes count."""
    import torch

    ids = torch.randint(0, model.config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cache = model(input_ids=ids[:, :4], use_cache=True).cache
    return {"input_ids": ids[:, 4:], "attention_mask": torch.ones(2, 7, dtype=torch.long),
            "position_ids": torch.arange(4, 7).expand(2, 3).clone(), "cache": cache}


def _text_sample(model: Any, ids: list[int]) -> dict[str, Any]:
    """A calibration sample in the traced step's form: the first 2 tokens as the cache, the
    rest of the task text as the new tokens (NNCF runs the graph before the cache is folded
    into OpenVINO state, so the cache is an input)."""
    import torch

    tokens = torch.tensor([ids])
    with torch.no_grad():
        cache = model(input_ids=tokens[:, :2], use_cache=True).cache
    return {"input_ids": tokens[:, 2:], "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
            "position_ids": torch.arange(2, len(ids))[None], "cache": cache}


def _quantizer(model: Any, quant: str, group_size: int, texts: list[list[int]] | None,
               ratio: float = 1.0) -> Any:
    """NNCF's weight compression for `quant`; int4 with `texts` (token ids of the task's kept
    teacher rows) is data-aware: AWQ and scale estimation on them. `ratio` < 1 keeps the
    most sensitive weights (by NNCF's sensitivity metric) int8."""
    if MODES[quant] is None:
        return None
    import nncf
    from transformers.exporters import NNCFOpenVINOQuantizer, NNCFWeightCompressionConfig

    mode = getattr(nncf.CompressWeightsMode, str(MODES[quant]))
    if quant != "int4":
        return NNCFOpenVINOQuantizer(NNCFWeightCompressionConfig(mode=mode))
    options: dict[str, Any] = {"group_size": group_size, "ratio": ratio}
    if not texts:
        return NNCFOpenVINOQuantizer(NNCFWeightCompressionConfig(mode=mode, **options))
    samples = [_text_sample(model, ids) for ids in texts if len(ids) > 2]
    config = NNCFWeightCompressionConfig(mode=mode, awq=True, scale_estimation=True,
                                         subset_size=len(samples), **options)
    return NNCFOpenVINOQuantizer(config, calibration_dataset=samples)


def load_model(hf_dir: Path) -> Any:
    """The HF folder's model in fp32, for export (read once: every folder is traced from it)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()


def export_folder(model: Any, hf_dir: Path, out: Path, quant: str, group_size: int,
                  texts: list[list[int]] | None = None, ratio: float = 1.0) -> None:
    """Write the openvino-genai folder `out` for `quant` (fp32 / int8 / int4; int4 data-aware
    when given calibration `texts`) from `model`, with `hf_dir`'s text files."""
    from transformers.exporters import OpenVINOConfig, OpenVINOExporter

    quantizer = _quantizer(model, quant, group_size, texts, ratio)
    config = OpenVINOConfig(dynamic=True, stateful=True, quantizer=quantizer)
    OpenVINOExporter().export(model, _sample(model), config).save_pretrained(out)
    _text_side(hf_dir, out)


def _text_side(hf_dir: Path, out: Path) -> None:
    """The HF text files, then openvino-tokenizers' conversion of the same tokenizer."""
    import openvino as ov
    import openvino_tokenizers

    from pipeline.models.hf import load_tokenizer

    for name in TEXT_FILES:
        if (hf_dir / name).is_file():
            shutil.copyfile(hf_dir / name, out / name)
    tokenizer, detokenizer = openvino_tokenizers.convert_tokenizer(
        load_tokenizer(hf_dir), with_detokenizer=True)
    ov.save_model(tokenizer, str(out / "openvino_tokenizer.xml"))
    ov.save_model(detokenizer, str(out / "openvino_detokenizer.xml"))


def weight_types(folder: Path) -> dict[str, dict[str, int]]:
    """The IR's weight constants per element type (f32, u8, u4...): count and elements. A
    weight is a constant of ≥ 2 dimensions, ≥ 1024 elements and a last axis > 1 (the scales
    and zero points of compressed weights have a last axis of 1: [rows, groups, 1])."""
    import math

    import openvino as ov

    types: dict[str, dict[str, int]] = {}
    for op in ov.Core().read_model(str(folder / MODEL_XML)).get_ops():
        if op.get_type_name() != "Constant":
            continue
        shape = list(op.get_output_shape(0))
        n = math.prod(shape) if shape else 1
        if len(shape) < 2 or n < 1024 or shape[-1] == 1:
            continue
        entry = types.setdefault(op.get_output_element_type(0).get_type_name(),
                                 {"tensors": 0, "params": 0})
        entry["tensors"] += 1
        entry["params"] += n
    return types
