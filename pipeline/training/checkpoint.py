"""Training checkpoints without pickles: trainable weights, AdamW moments, RNG and data position.

A checkpoint is a folder `step-000040/` with
  weights.safetensors    every trainable parameter (all of them in a full fine-tune; the
                         LoRA adapters only with LoRA)
  optimizer.safetensors  AdamW's step/exp_avg/exp_avg_sq per trainable parameter, by index
  rng.safetensors        torch's global RNG (dropout) and the data-order generator
  state.json             step, the epoch's shuffled order, scheduler state, losses so far
It is written to `step-N.tmp` and renamed, so a kill -9 leaves either the previous
checkpoint or the new one, never half of one. Only the newest is kept.

Example:
    >>> from pathlib import Path
    >>> from pipeline.training.checkpoint import latest
    >>> latest(Path("/nonexistent")) is None
    True
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

STATE = "state.json"


def trainable(model: Any) -> list[tuple[str, Any]]:
    """(name, parameter) of everything the optimizer updates, in a stable order."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def save(folder: Path, step: int, model: Any, opt: Any, sched: Any, rng: dict[str, Any],
         state: dict[str, Any]) -> Path:
    """Write checkpoint `step` under folder atomically and drop older ones."""
    from safetensors.torch import save_file

    final = folder / f"step-{step:06d}"
    tmp = folder / f"step-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    params = trainable(model)
    save_file({n: p.detach().contiguous().clone() for n, p in params}, tmp / "weights.safetensors")
    moments = {}
    for i, (_, p) in enumerate(params):
        for key, value in opt.state.get(p, {}).items():
            moments[f"{i}.{key}"] = value.detach().contiguous().clone()
    save_file(moments, tmp / "optimizer.safetensors")
    save_file({k: v.clone() for k, v in rng.items()}, tmp / "rng.safetensors")
    sched_state = {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}
    (tmp / STATE).write_text(json.dumps({**state, "step": step, "scheduler": sched_state}))
    os.replace(tmp, final)
    for old in folder.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest(folder: Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    done = sorted(p for p in folder.glob("step-*") if not p.name.endswith(".tmp")
                  and (p / STATE).is_file()) if folder.is_dir() else []
    return done[-1] if done else None


def load(ckpt: Path, model: Any, opt: Any, sched: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore weights, optimizer and scheduler in place; return (rng tensors, state)."""
    import torch
    from safetensors.torch import load_file

    params = trainable(model)
    weights = load_file(ckpt / "weights.safetensors")
    with torch.no_grad():
        for name, p in params:
            p.copy_(weights[name])
    moments = load_file(ckpt / "optimizer.safetensors")
    for i, (_, p) in enumerate(params):
        mine = {k.split(".", 1)[1]: v for k, v in moments.items() if k.split(".", 1)[0] == str(i)}
        if mine:  # moments live beside their parameter; AdamW keeps "step" on the CPU
            opt.state[p] = {k: v if k == "step" else v.to(p.device) for k, v in mine.items()}
    state = json.loads((ckpt / STATE).read_text())
    sched.load_state_dict({**state.pop("scheduler"), "lr_lambdas": [None] * len(opt.param_groups)})
    for group, lr in zip(opt.param_groups, sched.get_last_lr(), strict=True):
        group["lr"] = lr
    return load_file(ckpt / "rng.safetensors"), state
