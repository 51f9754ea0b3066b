"""Loading a student into transformers from a GGUF file or a Hugging Face folder.

Loading stays real and offline: `from_pretrained` on a local folder (HF_HUB_OFFLINE=1),
with `trust_remote_code=False` and safetensors only (no pickles). A GGUF is dequantized
to fp32 by transformers; its tokenizer needs fixes (seen under transformers 4.57): the eos
token comes out as <|im_start|>, a BOS is prepended that the
chat template does not want, and a copy of the GGUF is saved as tokenizer.model.

Example:
    python -c "from pipeline.models.hf import save_hf_copy; from pathlib import Path; \
        save_hf_copy(Path('model.gguf'), Path('/tmp/student-hf'))"
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.errors import UserError


def _offline() -> None:
    # No machine here reaches a hub: fail fast instead of waiting on network timeouts.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def load_tokenizer(source: Path) -> Any:
    """Tokenizer from an HF folder or a GGUF file, with the GGUF fixes applied."""
    _offline()
    from transformers import AutoTokenizer

    if source.is_dir():
        return AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    tok = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    _fix_gguf_tokenizer(tok)
    return tok


def _fix_gguf_tokenizer(tok: Any) -> None:
    """Repair what transformers 4.57 gets wrong when reading a ChatML GGUF tokenizer."""
    vocab = tok.get_vocab()
    if "<|im_end|>" in vocab:
        tok.eos_token = "<|im_end|>"
        tok.pad_token = "<|im_end|>"
    if getattr(tok, "add_bos_token", False):
        tok.add_bos_token = False  # the chat template writes its own start tokens


@contextmanager
def _tensor_map_built_once() -> Iterator[None]:
    """transformers' GGUF loader asks gguf-py for the (arch, n_blocks) tensor-name table
    once per module of the model — ~400 times for SmolLM2, ~10 s of a 2-core CPU — and the
    table is the same every time: build it once for the duration of the load."""
    import gguf

    original = gguf.get_tensor_name_map
    gguf.get_tensor_name_map = functools.cache(original)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = original


def load_causal_lm(source: Path) -> Any:
    """fp32 causal LM from an HF folder (safetensors only) or a GGUF file (dequantized)."""
    _offline()
    import torch
    from transformers import AutoModelForCausalLM

    try:
        if source.is_dir():
            return AutoModelForCausalLM.from_pretrained(
                source, dtype=torch.float32, trust_remote_code=False, use_safetensors=True)
        with _tensor_map_built_once():
            model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name,
                                                         dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load student model {source}: {exc}") from None
    # save_pretrained refuses a GGUF-loaded model until its quantizer is forgotten.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def load_for_inference(source: Path) -> tuple[Any, Any]:
    """(model, device): fp32 in eval mode on accelerate's device (CUDA when present) — the
    teacher backend, the teacher-logits scorer, the imatrix pass and the torch bench row.
    fp32 on any device: these are the references, and never a precision the CPU emulates."""
    from pipeline.precision import torch_device

    device = torch_device()
    return load_causal_lm(source).eval().to(device), device


def save_hf_copy(source: Path, out_dir: Path) -> dict[str, Any]:
    """Write source as a plain fp32 safetensors HF folder (+ tokenizer, chat template)."""
    tok = load_tokenizer(source)
    if not tok.chat_template:
        raise UserError(f"student {source} has no chat template: use an instruct model")
    model = load_causal_lm(source)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    # The GGUF exporters copy the whole GGUF in as tokenizer.model; tokenizer.json suffices.
    (out_dir / "tokenizer.model").unlink(missing_ok=True)
    return {"architecture": model.config.architectures[0] if model.config.architectures else "",
            "parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": len(tok)}
