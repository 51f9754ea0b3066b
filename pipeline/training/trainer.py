"""The distillation training loop: cross-entropy on the teacher's text, optionally mixed with a
logit-KD term, with checkpoints, resume, held-out evals and accelerate for scale-out.

loss = (1 − kd_weight) · CE(student, teacher's answer) + kd_weight · D(teacher ‖ student)
where D is `distill.kd_loss` (forward/reverse KL or JSD, pipeline.training.kd) over the reply tokens,
against the teacher's cached top-k log-probs (the `teacher_logits` stage) or its full logits
computed here under no_grad (`teacher_logits = "on_the_fly"`, an HF teacher). With
`on_policy` = λ > 0, a λ fraction of steps trains on the student's own samples scored by the
teacher (GKD); those steps use D alone — CE on the student's own text would teach nothing.

The loop is written against `accelerate.Accelerator`: run plainly it is one process; under
`accelerate launch --num_processes N` (or torchrun) the same code trains with DDP, each rank
taking its share of every global batch, so steps and the schedule do not change with N.

Example:
    >>> from pipeline.training.trainer import steps_per_epoch
    >>> steps_per_epoch(n_examples=20, batch_size=8, world=1)
    3
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pipeline.outputs import TRAIN_LOG
from pipeline.precision import Precision, choose_precision, cpu_only
from pipeline.stage import Settings
from pipeline.stage import log as stage_log
from pipeline.training import checkpoint
from pipeline.training.kd import kd_loss, kd_loss_topk, trim
from pipeline.training.sft_data import (
    IGNORE,
    Example,
    batch_indices,
    collate,
    length_grouped,
    reply_ce,
    reply_start,
    teacher_view,
)

TopK = dict[int, tuple[Any, Any]]  # example index -> (ids [n, k], log-probs [n, k])


class TrainSettings(Settings):
    """The loop's settings (a slice of `[distill]` plus how to run it)."""

    seed: int = 0
    batch_size: int = 8
    epochs: float = 2.0
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    bf16: Literal["auto"] | bool = "auto"  # pipeline.precision decides "auto"
    eval_every: int = 0  # steps; 0 = only before and after training
    group_by_length: bool = False  # batches of similar-length examples (less padding)
    checkpoint_every: int = 0  # steps; 0 = no checkpoints
    device: Literal["auto", "cpu"] = "auto"


@dataclass
class KD:
    """What the KD term needs; `teacher` (an HF model) or `cached` (top-k per split)."""

    loss: str
    weight: float
    temperature: float
    beta: float
    shared_vocab: int
    cached: dict[str, TopK] | None = None
    teacher: Any = None
    on_policy: float = 0.0
    max_new_tokens: int = 96
    pad_id: int = 0
    # the live teacher's own prompt per example ({split: [ids]}); None: the student's prompt
    prefixes: dict[str, list[list[int]]] | None = None


def steps_per_epoch(n_examples: int, batch_size: int, world: int) -> int:
    # A batch smaller than the number of ranks would leave a rank idle (DDP needs every rank).
    return sum(1 for b in batch_indices(list(range(n_examples)), batch_size) if len(b) >= world)


def _kd_term(kd: KD, logits: Any, batch: dict[str, Any], chunk: list[Example], idx: list[int],
             split: str) -> Any:
    """The KD divergence on a batch's reply positions (row-major, as the cache stores them)."""
    import torch

    sel = batch["labels"][:, 1:] != IGNORE
    student = trim(logits[:, :-1][sel], kd.shared_vocab)
    if kd.teacher is not None:
        tb = batch if kd.prefixes is None else _to(collate(
            [teacher_view(kd.prefixes[split][i], ex) for i, ex in zip(idx, chunk, strict=True)],
            kd.pad_id), logits.device)
        with torch.no_grad():
            t = kd.teacher(input_ids=tb["input_ids"], attention_mask=tb["attention_mask"]).logits
        teacher = trim(t[:, :-1][tb["labels"][:, 1:] != IGNORE], kd.shared_vocab)
        ones = torch.ones(student.shape[0], dtype=torch.bool, device=student.device)
        return kd_loss(student, teacher, ones, kd.loss, kd.temperature, kd.beta)
    assert kd.cached is not None  # set by the caller whenever teacher is None
    ids = torch.cat([kd.cached[split][i][0] for i in idx]).to(student.device)
    logp = torch.cat([kd.cached[split][i][1] for i in idx]).to(student.device)
    return kd_loss_topk(student, ids, logp, kd.loss, kd.temperature, kd.beta)


def _to(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    return {k: v.to(device) for k, v in batch.items()}


def _device_of(model: Any) -> Any:
    return next(model.parameters()).device


def _on_policy(model: Any, chunk: list[Example], pad_id: int, max_new: int) -> list[Example]:
    """The same prompts answered by the student itself (sampled), labelled as replies."""
    import torch

    out = []
    was_training = model.training
    model.eval()
    plain = getattr(model, "module", model)  # DDP's wrapper has no generate()
    for ids, labels in chunk:
        n = reply_start(labels)
        with torch.no_grad():
            seq = plain.generate(torch.tensor([ids[:n]], device=_device_of(plain)), do_sample=True,
                                 temperature=1.0, top_k=0, max_new_tokens=max_new,
                                 pad_token_id=pad_id)
        sample = [int(x) for x in seq[0, n:].tolist()] or [pad_id]
        out.append((ids[:n] + sample, [IGNORE] * n + sample))
    model.train(was_training)
    return out


def evaluate(model: Any, examples: list[Example], s: TrainSettings, pad_id: int,
             kd: KD | None = None, precision: Precision | None = None) -> dict[str, float]:
    """Held-out loss per reply token, and (with KD) forward KL to the teacher at τ = 1.
    `precision`: the training's; None decides it for the model's device from `s.bf16`."""
    import torch

    was_training, loss_sum, kl_sum, count = model.training, 0.0, 0.0, 0
    # the KL reported is plain forward KL at τ = 1, whatever the training loss
    plain = None if kd is None else replace(kd, loss="forward_kl", temperature=1.0)
    device = _device_of(model)
    precision = precision or choose_precision(s.bf16, device.type)
    model.eval()
    with torch.no_grad(), precision.autocast():
        # by length: less padding; the loss is a per-token mean, so the order does not change it
        by_length = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
        for idx in batch_indices(by_length, s.batch_size):
            chunk = [examples[i] for i in idx]
            batch = _to(collate(chunk, pad_id), device)
            n = int((batch["labels"][:, 1:] != IGNORE).sum())  # tokens the loss averages over
            if plain is None:
                loss_sum += float(reply_ce(model, batch)) * n
            else:
                out = model(**batch)
                loss_sum += float(out.loss) * n
                kl_sum += float(_kd_term(plain, out.logits, batch, chunk, idx, "eval")) * n
            count += n
    model.train(was_training)
    result = {"eval_loss": loss_sum / max(count, 1)}
    if kd is not None:
        result["eval_kl"] = kl_sum / max(count, 1)
    return result


def _step_loss(model: Any, chunk: list[Example], idx: list[int], precision: Precision,
               pad_id: int, kd: KD | None, on_policy: bool) -> tuple[Any, int]:
    if on_policy and kd is not None:
        chunk = _on_policy(model, chunk, pad_id, kd.max_new_tokens)
    batch = _to(collate(chunk, pad_id), _device_of(model))
    with precision.autocast():
        if kd is None or kd.weight == 0:
            return reply_ce(model, batch), int(batch["attention_mask"].sum())
        out = model(**batch)
        if on_policy:
            loss = _kd_term(kd, out.logits, batch, chunk, idx, "train")
        else:
            kd_term = _kd_term(kd, out.logits, batch, chunk, idx, "train")
            loss = (1 - kd.weight) * out.loss + kd.weight * kd_term
    return loss, int(batch["attention_mask"].sum())


def _step_of(line: str) -> float:
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf  # a line cut by kill -9: dropped


class _Log:
    """train_log.jsonl, written by the main process only; on resume cut back to the checkpoint."""

    def __init__(self, path: Path, main: bool, resume_step: int | None) -> None:
        self.file = None
        if not main:
            return
        keep = []
        if resume_step is not None and path.is_file():
            keep = [x for x in path.read_text().splitlines() if _step_of(x) <= resume_step]
        path.write_text("".join(x + "\n" for x in keep))
        self.file = path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()  # a kill -9 keeps every line written so far

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _optimizer(model: Any, s: TrainSettings, total: int) -> tuple[Any, Any]:
    import torch
    from transformers import get_scheduler

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                            lr=s.learning_rate, weight_decay=s.weight_decay)
    sched = get_scheduler("cosine", opt, num_warmup_steps=int(total * s.warmup_ratio),
                          num_training_steps=total)
    return opt, sched


def _resume(ckpt_dir: Path, model: Any, opt: Any, sched: Any, gens: dict[str, Any]
            ) -> dict[str, Any] | None:
    """Restore the newest checkpoint into model/opt/sched/RNGs; its state, or None."""
    import torch

    found = checkpoint.latest(ckpt_dir)
    if found is None:
        return None
    rng, state = checkpoint.load(found, model, opt, sched)
    torch.set_rng_state(rng["torch"])
    for name, gen in gens.items():
        gen.set_state(rng[name])
    return state


def train(model: Any, examples: list[Example], s: TrainSettings, pad_id: int, out_dir: Path,
          held_out: list[Example] | None = None, kd: KD | None = None,
          on_step: Callable[[int], None] | None = None) -> tuple[Any, dict[str, Any]]:
    """Train; return (the unwrapped model, a summary). Resumes from out_dir/checkpoints/.

    Writes out_dir/train_log.jsonl: one line per step, and eval lines (held-out loss, KL to
    the teacher with KD) before training, every `eval_every` steps (0: none between) and at the end."""
    import torch
    from tqdm import tqdm

    acc, precision = _accelerator(s, kd)
    scaler = precision.scaler()
    out_dir.mkdir(parents=True, exist_ok=True)
    world, rank = acc.num_processes, acc.process_index
    torch.manual_seed(s.seed)
    gens = {"data": torch.Generator().manual_seed(s.seed),
            "policy": torch.Generator().manual_seed(s.seed + 1)}  # GKD's coin per step
    per_epoch = steps_per_epoch(len(examples), s.batch_size, world)
    total = max(1, math.ceil(per_epoch * s.epochs))
    opt, sched = _optimizer(model, s, total)
    resumed = _resume(out_dir / "checkpoints", model, opt, sched, gens)
    state = resumed or {"step": 0, "losses": [], "evals": [], "tokens": 0, "order": None,
                        "wall_s": 0.0}
    wrapped, prepared_opt = acc.prepare(model, opt)
    log = _Log(out_dir / TRAIN_LOG, acc.is_main_process,
               state["step"] if resumed else None)
    every = s.eval_every or total  # each held-out pass costs ~1/3 of an epoch's compute
    lengths = [len(ids) for ids, _ in examples] if s.group_by_length else None
    start = time.perf_counter() - state["wall_s"]
    kd_eval = kd if kd is not None and kd.weight > 0 else None

    def run_eval() -> None:
        if held_out:
            result = evaluate(wrapped, held_out, s, pad_id, kd_eval, precision)
            state["evals"].append(result)
            log.write({"step": state["step"], **{k: round(v, 5) for k, v in result.items()}})

    if not resumed:
        run_eval()
    bar = tqdm(total=total, initial=state["step"], desc="distill", unit="step",
               disable=not acc.is_main_process)
    while state["step"] < total:
        step = state["step"]
        idx = _batch_of(state, len(examples), s.batch_size, per_epoch, world, rank,
                        gens["data"], lengths)
        policy = bool(kd and kd.on_policy > 0
                      and float(torch.rand(1, generator=gens["policy"])) < kd.on_policy)
        loss, tokens = _step_loss(wrapped, [examples[i] for i in idx], idx, precision, pad_id,
                                  kd, policy)
        _optimizer_step(acc, wrapped, prepared_opt, scaler, loss)
        sched.step()
        prepared_opt.zero_grad(set_to_none=True)
        state["step"], state["wall_s"] = step + 1, time.perf_counter() - start
        _record_step(state, float(loss.detach()), tokens * world, sched.get_last_lr()[0], policy,
                     log, bar)
        if (step + 1) % every == 0 or step + 1 >= total:
            run_eval()
        if s.checkpoint_every and (step + 1) % s.checkpoint_every == 0 and step + 1 < total:
            _checkpoint(acc, out_dir / "checkpoints", wrapped, opt, sched, gens, state)
        if on_step is not None:
            on_step(step + 1)
    bar.close()
    log.close()
    summary = _summary(state, total, per_epoch, world) | precision.as_dict()
    if world > 1:
        summary["backend"] = torch.distributed.get_backend()  # gloo on CPU, nccl on GPUs
    return acc.unwrap_model(wrapped), summary


def _accelerator(s: TrainSettings, kd: KD | None) -> tuple[Any, Precision]:
    """accelerate picks the device (CUDA when present, one per rank under a launcher;
    ACCELERATE_USE_CPU=1 or `device = "cpu"` keep it on the CPU), then the precision that
    device runs natively; the live teacher, if any, goes on the same device."""
    from accelerate import Accelerator

    acc = Accelerator(cpu=cpu_only(s.device))
    precision = choose_precision(s.bf16, acc.device.type)
    if acc.is_main_process:
        stage_log("distill", f"training on {acc.device} in {precision.name}: {precision.reason}")
    if kd is not None and kd.teacher is not None:
        kd.teacher.to(acc.device)
    return acc, precision


def _record_step(state: dict[str, Any], loss: float, tokens: int, lr: float, policy: bool,
                 log: _Log, bar: Any) -> None:
    """The step's loss and tokens into the state, a train_log line, the progress bar."""
    state["losses"].append(loss)
    state["tokens"] += tokens
    log.write({"step": state["step"], "loss": round(loss, 5), "lr": lr,
               "elapsed_s": round(state["wall_s"], 2), **({"on_policy": True} if policy else {})})
    bar.update(1)
    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{state['tokens'] / max(state['wall_s'], 1e-9):.0f}")


def _optimizer_step(acc: Any, model: Any, opt: Any, scaler: Any, loss: Any) -> None:
    """Backward, clip to norm 1 and step; fp16 scales the loss (torch's GradScaler) and
    skips a step whose gradients overflowed."""
    if scaler is None:
        acc.backward(loss)
        acc.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return
    acc.backward(scaler.scale(loss))
    scaler.unscale_(opt.optimizer)  # the torch optimizer inside accelerate's wrapper
    acc.clip_grad_norm_(model.parameters(), 1.0)
    scaler.step(opt.optimizer)
    scaler.update()


def _batch_of(state: dict[str, Any], n: int, batch_size: int, per_epoch: int, world: int,
              rank: int, gen: Any, lengths: list[int] | None = None) -> list[int]:
    """This rank's example indices for the current step; a new shuffle at each epoch start
    (kept in the state, so a resumed run continues the same order). `lengths`: the examples'
    token counts, to group batches by (group_by_length)."""
    import torch

    step = state["step"]
    if step % per_epoch == 0 and state.get("order_step") != step or state["order"] is None:
        order = torch.randperm(n, generator=gen).tolist()
        if lengths is not None:
            order = length_grouped(order, lengths, batch_size,
                                   torch.randperm(n // batch_size, generator=gen).tolist())
        state["order"], state["order_step"] = order, step
    batches = [b for b in batch_indices(state["order"], batch_size) if len(b) >= world]
    return batches[step % per_epoch][rank::world]


def _checkpoint(acc: Any, folder: Path, wrapped: Any, opt: Any, sched: Any,
                gens: dict[str, Any], state: dict[str, Any]) -> None:
    """The main process writes; every rank waits, so none runs ahead of a checkpoint."""
    import torch

    if acc.is_main_process:
        rng = {"torch": torch.get_rng_state(), **{k: g.get_state() for k, g in gens.items()}}
        checkpoint.save(folder, state["step"], acc.unwrap_model(wrapped), opt, sched, rng, state)
    acc.wait_for_everyone()


def _summary(state: dict[str, Any], total: int, per_epoch: int, world: int) -> dict[str, Any]:
    losses, evals, wall = state["losses"], state["evals"], state["wall_s"]
    tail = losses[-max(1, per_epoch):]
    out = {"steps": total, "first_loss": round(losses[0], 4),
           "final_loss": round(sum(tail) / len(tail), 4), "train_tokens": state["tokens"],
           "train_tokens_per_s": round(state["tokens"] / wall, 1), "train_wall_s": round(wall, 1),
           "processes": world}
    if evals:
        out |= {"first_eval_loss": round(evals[0]["eval_loss"], 4),
                "final_eval_loss": round(evals[-1]["eval_loss"], 4)}
        if "eval_kl" in evals[-1]:
            out |= {"first_eval_kl": round(evals[0]["eval_kl"], 4),
                    "final_eval_kl": round(evals[-1]["eval_kl"], 4)}
    return out
