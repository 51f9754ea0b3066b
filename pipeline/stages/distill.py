"""Distill stage: train the student on the kept teacher rows — sequence-level KD (fine-tune on
the teacher's text), optionally with logit-level KD against the teacher's distribution.

setup:   load the student base folder and tokenizer; render every kept row with the
         student's chat template and its short system prompt (not the teacher's few-shot
         prompt: context distillation), loss masked to the response tokens. The mode comes
         from the teacher_logits stage's decision.json (sequence, or logits with the shared
         vocabulary and, when cached, the teacher's top-k per reply token); with
         `teacher_logits = "on_the_fly"` the HF teacher is loaded here, frozen. With
         `lora_rank > 0` the student gets LoRA adapters on every linear projection (peft).
run:     pipeline.trainer: AdamW + cosine on accelerate's device, bf16 autocast only where
         the device runs it natively (pipeline.precision), checkpoints every
         `checkpoint_every` steps in this step's partial folder (a killed build resumes
         from the last one), held-out evals, accelerate (DDP under `distill.launcher`).
cleanup: merge LoRA into the weights, save an HF safetensors folder + tokenizer + chat
         template, the training log and prompt_format.json; drop the checkpoints.

Example:
    distill-edge build --target cpu-int4
    tail -3 build/cache/distill/*/train_log.jsonl
    # the same step on 2 processes (DDP; gloo on CPU, NCCL on GPUs): in the config's [distill]
    #   launcher = "accelerate launch --multi_gpu --num_processes 2"
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipeline.config import BuildConfig
from pipeline.errors import UserError
from pipeline.sft_data import (
    held_out_rows,
    kept_rows,
    prompt_settings,
    teacher_prefix,
    teacher_prompt_settings,
)
from pipeline.stage import StageContext, log
from pipeline.targets import Target
from pipeline.trainer import KD, train

RUNTIME_ONLY = ("launcher", "checkpoint_every", "device")  # how to train, not what: outside the cache key


def _kd(s: dict[str, Any], inputs: dict[str, Path], decision: dict[str, Any], tok: Any,
        prompts: dict[str, list[str]]) -> KD | None:
    """The KD term's inputs for the decided mode (None: sequence-level KD only)."""
    if decision["mode"] != "logits" or s["kd_weight"] == 0:
        return None
    kd = KD(s["kd_loss"], s["kd_weight"], s["temperature"], s["beta"], decision["shared_vocab"],
            on_policy=s["on_policy"], max_new_tokens=s["max_new_tokens"], pad_id=tok.pad_token_id)
    if s["teacher_logits"] == "on_the_fly":
        from pipeline.models.hf import load_causal_lm

        kd.teacher = load_causal_lm(inputs["teacher_model"]).eval().requires_grad_(False)
        kd.prefixes = {split: [teacher_prefix(tok, s, p) for p in rows]
                       for split, rows in prompts.items()}
    else:
        from pipeline.topk_cache import load_cached

        kd.cached = load_cached(inputs["teacher_logits"])
    return kd


def with_lora(model: Any, s: dict[str, Any]) -> Any:
    if not s["lora_rank"]:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=s["lora_rank"], lora_alpha=s["lora_alpha"], lora_dropout=s["lora_dropout"],
                        target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def distill(s: dict[str, Any], inputs: dict[str, Path], out_dir: Path,
            runtime: dict[str, Any]) -> dict[str, Any]:
    """Setup, train and save; in every process under a launcher, rank 0 writes the outputs."""
    import torch
    from accelerate import PartialState

    from pipeline.models.hf import load_causal_lm, load_tokenizer

    torch.set_num_threads(s["threads"])
    tok, model = load_tokenizer(inputs["base"]), load_causal_lm(inputs["base"])
    examples, prompts, skipped = kept_rows(tok, s, inputs["data"] / "kept.jsonl")
    log("distill", f"{len(examples)} examples ({skipped} over max_seq_len skipped)")
    decision = json.loads((inputs["teacher_logits"] / "decision.json").read_text())
    log("distill", f"mode {decision['mode']}: {decision['reason']}")
    held_out, held_prompts = held_out_rows(tok, s, inputs["eval_data"])
    kd = _kd(s, inputs, decision, tok, {"train": prompts, "eval": held_prompts})
    trained, summary = train(with_lora(model, s), examples, s | runtime, tok.pad_token_id,
                             out_dir, held_out, kd)
    if not PartialState().is_main_process:
        return summary
    if s["lora_rank"]:
        trained = trained.merge_and_unload()  # later stages see a plain HF folder
    trained.eval()
    trained.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    prompt_format = {"system": s["system_prompt"], "user_template": s["user_template"],
                     "messages": [{"role": "system", "content": s["system_prompt"]},
                                  {"role": "user", "content": s["user_template"]}],
                     "chat_template": tok.chat_template}
    (out_dir / "prompt_format.json").write_text(json.dumps(prompt_format, indent=2))
    summary = {"mode": decision["mode"], "examples": len(examples), "skipped_too_long": skipped,
               **({"lora_rank": s["lora_rank"]} if s["lora_rank"] else {}), **summary}
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _launch(ctx: StageContext) -> dict[str, Any]:
    """Run `distill` under the user's launcher (accelerate launch / torchrun) as a module."""
    job = ctx.out_dir / "job.json"
    job.write_text(json.dumps({"settings": ctx.settings, "runtime": ctx.runtime,
                               "inputs": {k: str(v) for k, v in ctx.inputs.items()},
                               "out_dir": str(ctx.out_dir)}))
    cmd = [*shlex.split(ctx.runtime["launcher"]), "-m", "pipeline.distill_job", str(job)]
    beside = Path(sys.executable).with_name(cmd[0])  # the venv's own accelerate/torchrun
    if shutil.which(cmd[0]) is None and beside.is_file():
        cmd[0] = str(beside)
    ctx.log("launching: " + " ".join(cmd))
    try:
        code = subprocess.run(cmd, check=False).returncode
    except FileNotFoundError:
        raise UserError(f"distill.launcher: command not found: {cmd[0]}") from None
    job.unlink()
    if code != 0:
        raise UserError(f"distill training under '{ctx.runtime['launcher']}' failed (exit {code})")
    return json.loads((ctx.out_dir / "summary.json").read_text())


class DistillStage:
    name = "distill"
    version = "4"
    libraries = ("torch", "transformers", "safetensors", "tokenizers", "peft", "accelerate")
    resumable = True  # checkpoints in the partial folder survive a kill -9

    def settings(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        d = config.distill
        return {**d.model_dump(exclude=set(RUNTIME_ONLY)),
                "eval_rows": d.eval_rows or config.task.max_eval_rows,
                "max_new_tokens": config.teacher.max_tokens, **prompt_settings(config),
                **teacher_prompt_settings(config)}

    def runtime(self, config: BuildConfig, target: Target) -> dict[str, Any]:
        return {k: getattr(config.distill, k) for k in RUNTIME_ONLY}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        if ctx.runtime.get("launcher"):
            return _launch(ctx)
        return distill(ctx.settings, ctx.inputs, ctx.out_dir, ctx.runtime)
