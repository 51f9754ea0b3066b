"""The teacher's cached top-k per reply token: written by the teacher_logits stage, read by distill.

One safetensors shard per 16 examples, `{split}-{first index:05d}.safetensors`, holding for
example i `i.ids` (int32 [reply positions, k]) and `i.logp` (float16 log-probs under the
teacher's full softmax). Shards are written to a temp name and renamed: a kill -9 loses at
most the shard in progress, and a rerun skips every finished one.

Example:
    >>> from pathlib import Path
    >>> from pipeline.training.topk_cache import load_cached
    >>> load_cached(Path("/nonexistent"))
    {'train': {}, 'eval': {}}
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.training.kd import topk, trim
from pipeline.training.sft_data import Example, reply_positions

SHARD_ROWS = 16
Scorer = Callable[[list[int], list[int]], Any]  # (ids, positions) -> logits [positions, vocab]


def write_shards(out_dir: Path, split: str, examples: list[Example], score: Scorer, k: int,
                 shared: int, log: Callable[[str], None]) -> int:
    """Score every example not already in a finished shard; returns reply positions scored."""
    import torch
    from safetensors.torch import save_file

    done = 0
    for start in range(0, len(examples), SHARD_ROWS):
        path = out_dir / f"{split}-{start:05d}.safetensors"
        if path.is_file():
            continue  # resumed: finished before an interruption
        tensors = {}
        for i in range(start, min(start + SHARD_ROWS, len(examples))):
            ids, labels = examples[i]
            logits = trim(score(ids, reply_positions(labels)), shared)
            top_ids, top_logp = topk(logits, k)
            tensors[f"{i}.ids"], tensors[f"{i}.logp"] = top_ids, top_logp.to(torch.float16)
            done += len(top_ids)
        tmp = path.with_suffix(".tmp")
        save_file(tensors, tmp)
        os.replace(tmp, path)
        log(f"{split}: {min(start + SHARD_ROWS, len(examples))}/{len(examples)} rows scored")
    return done


def load_cached(folder: Path) -> dict[str, dict[int, tuple[Any, Any]]]:
    """{split: {example index: (ids, log-probs)}} from the stage's shards."""
    from safetensors.torch import load_file

    out: dict[str, dict[int, tuple[Any, Any]]] = {"train": {}, "eval": {}}
    for split, examples in out.items():
        for shard in sorted(folder.glob(f"{split}-*.safetensors")):
            tensors = load_file(shard)
            for name in tensors:
                if name.endswith(".ids"):
                    i = int(name.split(".")[0])
                    examples[i] = (tensors[name], tensors[f"{i}.logp"].float())
    return out
