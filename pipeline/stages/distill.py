"""Distill stage: sequence-level KD — supervised fine-tuning of the student on kept teacher rows.

setup:   load the student base folder and tokenizer; render every kept row with the
         student's chat template and its short system prompt (not the teacher's few-shot
         prompt: context distillation), loss masked to the response tokens.
run:     AdamW + cosine schedule, bf16 autocast on CPU, shuffled batches, fixed seed.
cleanup: save an HF safetensors folder + tokenizer + chat template, the training log,
         and prompt_format.json (the exact messages the student was trained with).

Example:
    distill-edge build --target cpu-int4
    tail -3 build/cache/distill/*/train_log.jsonl
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from pipeline.config import BuildConfig
from pipeline.errors import UserError
from pipeline.stage import StageContext
from pipeline.targets import Target

IGNORE = -100  # label value the loss skips (prompt and padding tokens)


def _ids(encoded: Any) -> list[int]:
    return [int(i) for i in encoded["input_ids"]]


def encode_example(tok: Any, system: str, user: str, response: str) -> tuple[list[int], list[int]]:
    """Token ids and labels for one chat example; labels cover the reply only."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    prompt = _ids(tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                          return_dict=True))
    full = _ids(tok.apply_chat_template(messages + [{"role": "assistant", "content": response}],
                                        tokenize=True, return_dict=True))
    if full[: len(prompt)] != prompt:
        # A template that renders history differently would silently mis-mask the loss.
        raise UserError("the student's chat template does not extend the prompt with the reply: "
                        "cannot mask the loss to the response")
    return full, [IGNORE] * len(prompt) + full[len(prompt):]


def _batches(examples: list[tuple[list[int], list[int]]], batch_size: int, pad_id: int,
             order: list[int]) -> list[dict[str, Any]]:
    import torch

    batches = []
    for start in range(0, len(order), batch_size):
        chunk = [examples[i] for i in order[start : start + batch_size]]
        width = max(len(ids) for ids, _ in chunk)
        ids = [a + [pad_id] * (width - len(a)) for a, _ in chunk]
        labels = [b + [IGNORE] * (width - len(b)) for _, b in chunk]
        mask = [[1] * len(a) + [0] * (width - len(a)) for a, _ in chunk]
        batches.append({"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                        "attention_mask": torch.tensor(mask)})
    return batches


def eval_loss(model: Any, examples: list[tuple[list[int], list[int]]], s: dict[str, Any],
              pad_id: int) -> float:
    """Mean loss per reply token on held-out examples (the eval split's reference answers)."""
    import torch

    was_training, total, count = model.training, 0.0, 0
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=s["bf16"]):
        for batch in _batches(examples, s["batch_size"], pad_id, list(range(len(examples)))):
            n = int((batch["labels"][:, 1:] != IGNORE).sum())  # tokens the loss averages over
            total += float(model(**batch).loss) * n
            count += n
    model.train(was_training)
    return total / max(count, 1)


def train(model: Any, examples: list[tuple[list[int], list[int]]], s: dict[str, Any],
          pad_id: int, log_path: Path,
          held_out: list[tuple[list[int], list[int]]] | None = None) -> dict[str, Any]:
    """The SFT loop; returns loss summary. Writes one JSON line per step to log_path, and
    the held-out loss before training and after every epoch."""
    import torch
    from tqdm import tqdm
    from transformers import get_scheduler

    torch.manual_seed(s["seed"])
    gen = torch.Generator().manual_seed(s["seed"])
    per_epoch = math.ceil(len(examples) / s["batch_size"])
    total = max(1, math.ceil(per_epoch * s["epochs"]))
    opt = torch.optim.AdamW(model.parameters(), lr=s["learning_rate"],
                            weight_decay=s["weight_decay"])
    sched = get_scheduler("cosine", opt, num_warmup_steps=int(total * s["warmup_ratio"]),
                          num_training_steps=total)
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    tokens = 0
    evals: list[float] = []

    def log_eval(log: Any) -> None:
        if held_out:
            evals.append(eval_loss(model, held_out, s, pad_id))
            log.write(json.dumps({"step": len(losses), "eval_loss": round(evals[-1], 5)}) + "\n")

    with log_path.open("w") as log, tqdm(total=total, desc="distill", unit="step") as bar:
        log_eval(log)
        while len(losses) < total:
            order = torch.randperm(len(examples), generator=gen).tolist()
            for batch in _batches(examples, s["batch_size"], pad_id, order):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s["bf16"]):
                    loss = model(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                tokens += int(batch["attention_mask"].sum())
                elapsed = time.perf_counter() - start
                log.write(json.dumps({"step": len(losses), "loss": round(losses[-1], 5),
                                      "lr": sched.get_last_lr()[0], "elapsed_s": round(elapsed, 2)}) + "\n")
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", tok_s=f"{tokens / elapsed:.0f}")
                if len(losses) % per_epoch == 0 or len(losses) >= total:
                    log_eval(log)
                if len(losses) >= total:
                    break
    wall = time.perf_counter() - start
    tail = losses[-max(1, per_epoch):]
    return {"steps": total, "first_loss": round(losses[0], 4),
            "final_loss": round(sum(tail) / len(tail), 4), "train_tokens": tokens,
            **({"first_eval_loss": round(evals[0], 4), "final_eval_loss": round(evals[-1], 4)}
               if evals else {}),
            "train_tokens_per_s": round(tokens / wall, 1), "train_wall_s": round(wall, 1)}


def _held_out(tok: Any, s: dict[str, Any], eval_path: Path) -> list[tuple[list[int], list[int]]]:
    """The eval split's reference answers as examples: a loss to watch, never to select on."""
    from pipeline.tasks import load_rows
    from pipeline.tasks.extraction import canonical

    rows = load_rows(eval_path, "eval data", need_reference=True)[: s["eval_rows"] or None]
    return [encode_example(tok, s["system_prompt"], s["user_template"].format(prompt=r["prompt"]),
                           canonical(r["reference"])) for r in rows]


class DistillStage:
    name = "distill"
    version = "2"
    libraries = ("torch", "transformers", "safetensors", "tokenizers")
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        from pipeline.tasks import extraction

        return {**config.distill.model_dump(), "eval_rows": config.task.max_eval_rows,
                "system_prompt": config.student.system_prompt or extraction.STUDENT_SYSTEM_PROMPT,
                "user_template": extraction.STUDENT_USER_TEMPLATE}

    def runtime(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        return {}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        import torch

        from pipeline.models.hf import load_causal_lm, load_tokenizer

        s = ctx.settings
        torch.set_num_threads(s["threads"])
        base = ctx.inputs["base"]
        tok, model = load_tokenizer(base), load_causal_lm(base)
        rows = [json.loads(x) for x in (ctx.inputs["data"] / "kept.jsonl").read_text().splitlines()]
        examples, skipped = [], 0
        for row in rows:
            ids, labels = encode_example(tok, s["system_prompt"],
                                         s["user_template"].format(prompt=row["prompt"]), row["response"])
            if len(ids) > s["max_seq_len"]:
                skipped += 1  # truncating would cut the answer: skip the row instead
                continue
            examples.append((ids, labels))
        if not examples:
            raise UserError(f"no training example fits distill.max_seq_len={s['max_seq_len']}")
        ctx.log(f"{len(examples)} examples ({skipped} over max_seq_len skipped)")
        held_out = _held_out(tok, s, ctx.inputs["eval_data"])
        summary = train(model, examples, s, tok.pad_token_id, ctx.out_dir / "train_log.jsonl",
                        held_out)
        model.eval()
        model.save_pretrained(ctx.out_dir, safe_serialization=True)
        tok.save_pretrained(ctx.out_dir)
        prompt_format = {"system": s["system_prompt"], "user_template": s["user_template"],
                         "messages": [{"role": "system", "content": s["system_prompt"]},
                                      {"role": "user", "content": s["user_template"]}],
                         "chat_template": tok.chat_template}
        (ctx.out_dir / "prompt_format.json").write_text(json.dumps(prompt_format, indent=2))
        return {"examples": len(examples), "skipped_too_long": skipped, **summary}
