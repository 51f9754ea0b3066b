"""Importance matrix (llama.cpp's imatrix) of a student on the task's own texts.

llama-imatrix's statistic: for every weight matrix, the mean of the squared input activation
of each input column over the calibration tokens. `llama_model_quantize` uses it to weight the
rounding error of each column, so the 4-bit blocks keep the columns the task actually drives.
Collected here with forward hooks on the fp32 HF model (the activations the F16 GGUF computes,
up to rounding) — no llama-imatrix binary to build — and named by gguf-py's own tensor map
(the converter's naming table), then handed to the quantizer as llama_model_imatrix_data[].

Example:
    >>> from pipeline.models.imatrix import gguf_tensor_name
    >>> gguf_tensor_name("model.layers.3.mlp.down_proj", "llama", 30)
    'blk.3.ffn_down.weight'
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np


def gguf_tensor_name(module: str, arch: str, n_blocks: int) -> str | None:
    """The GGUF name of an HF linear layer's weight (None if the converter has no mapping)."""
    import gguf

    archs = {name: arch_id for arch_id, name in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in archs:
        return None
    mapping = gguf.get_tensor_name_map(archs[arch], n_blocks)
    return mapping.get_name(module + ".weight", try_suffixes=(".weight",))


def collect(hf_dir: Path, texts: list[list[int]], threads: int) -> dict[str, np.ndarray]:
    """Mean squared input activation per column of every nn.Linear, keyed by HF module name."""
    import torch

    from pipeline.models.hf import load_for_inference

    torch.set_num_threads(threads)
    model, device = load_for_inference(hf_dir)
    sums: dict[str, Any] = {}
    counts: dict[str, int] = {}

    def hook(name: str) -> Any:
        def record(_module: Any, inputs: tuple[Any, ...], _output: Any) -> None:
            x = inputs[0].detach().float().reshape(-1, inputs[0].shape[-1])
            sums[name] = sums.get(name, 0) + (x * x).sum(dim=0)
            counts[name] = counts.get(name, 0) + x.shape[0]
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear)]
    try:
        with torch.no_grad():
            for ids in texts:
                model(input_ids=torch.tensor([ids], device=device))
    finally:
        for h in handles:
            h.remove()
    return {n: (sums[n] / counts[n]).cpu().numpy().astype(np.float32) for n in sums}


def for_gguf(stats: dict[str, np.ndarray], gguf_file: Path) -> dict[str, np.ndarray]:
    """The statistics under the GGUF's tensor names; a tied output head (no output.weight)
    multiplies by token_embd.weight, so its statistic goes there, as llama-imatrix records it."""
    from pipeline.models.gguf_info import read_gguf

    info = read_gguf(gguf_file)
    arch = str(info.keys["general.architecture"])
    n_blocks = int(info.keys[f"{arch}.block_count"])
    shapes = {t.name: t.columns for t in info.tensors}  # ne[0] = input columns
    out = {}
    for module, values in stats.items():
        name = gguf_tensor_name(module, arch, n_blocks)
        if name == "output.weight" and name not in shapes:
            name = "token_embd.weight"
        if name in shapes and shapes[name] == values.size:
            out[name] = values
    return out


def as_ctypes(matrix: dict[str, np.ndarray]) -> tuple[Any, list[Any]]:
    """A NULL-terminated llama_model_imatrix_data array, and the buffers it points into
    (keep them alive until the quantizer returns)."""
    import llama_cpp

    entries = (llama_cpp.llama_model_imatrix_data * (len(matrix) + 1))()
    keep: list[Any] = []
    for i, (name, values) in enumerate(sorted(matrix.items())):
        buf = np.ascontiguousarray(values, dtype=np.float32)
        encoded = name.encode()
        keep += [buf, encoded]
        entries[i].name = encoded
        entries[i].data = buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        entries[i].size = buf.size
    keep.append(entries)
    return ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data)), keep
