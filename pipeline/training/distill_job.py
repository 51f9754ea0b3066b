"""One training process of the distill step: setup, train, save (`distill`).

The distill stage calls `distill` in its own process, or, under `[distill] launcher`, writes a
job file (settings, inputs, output folder) and runs this module under the launcher
(accelerate launch / torchrun); every rank trains, rank 0 writes the outputs.

Example:
    accelerate launch --multi_gpu --num_processes 2 -m pipeline.training.distill_job job.json
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import UserError
from pipeline.outputs import DISTILL_SUMMARY, KEPT, PROMPT_FORMAT, TRAINING_MODE, TrainingMode, read_doc
from pipeline.prompts import ChatPrompt
from pipeline.stage import Settings, log
from pipeline.tasks.inputs import EVAL_FILE
from pipeline.training.sft_data import held_out_rows, kept_rows, teacher_prefix
from pipeline.training.trainer import KD, TrainSettings, train


class DistillSettings(Settings):
    """What the trained weights depend on: `[distill]` (less how to run it), the student's
    prompt and the teacher's (the context the teacher's logits are scored in)."""

    mode: str
    kd_loss: str
    kd_weight: float
    temperature: float
    beta: float
    teacher_logits: str
    top_k: int
    on_policy: float
    lora_rank: int
    lora_alpha: int
    lora_dropout: float
    eval_every: int
    group_by_length: bool
    eval_rows: int
    epochs: float
    learning_rate: float
    batch_size: int
    max_seq_len: int
    warmup_ratio: float
    weight_decay: float
    bf16: Literal["auto"] | bool
    trained_as: str = ""  # "<device>/<precision>" this machine trains on (precision.planned)
    threads: int
    seed: int
    max_new_tokens: int  # GKD's student samples
    student_prompt: ChatPrompt
    teacher_prompt: ChatPrompt


def _kd(s: DistillSettings, inputs: dict[str, Path], decision: TrainingMode, tok: Any,
        prompts: dict[str, list[str]]) -> KD | None:
    """The KD term's inputs for the decided mode (None: sequence-level KD only)."""
    if decision.mode != "logits" or s.kd_weight == 0:
        return None
    kd = KD(s.kd_loss, s.kd_weight, s.temperature, s.beta, decision.shared_vocab,
            on_policy=s.on_policy, max_new_tokens=s.max_new_tokens, pad_id=tok.pad_token_id)
    if s.teacher_logits == "on_the_fly":
        from pipeline.models.hf import load_causal_lm

        kd.teacher = load_causal_lm(inputs["teacher_model"]).eval().requires_grad_(False)
        kd.prefixes = {split: [teacher_prefix(tok, s.teacher_prompt, p) for p in rows]
                       for split, rows in prompts.items()}
    else:
        from pipeline.training.topk_cache import load_cached

        kd.cached = load_cached(inputs["teacher_logits"])
    return kd


def with_lora(model: Any, s: DistillSettings) -> Any:
    if not s.lora_rank:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=s.lora_rank, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout,
                        target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def train_settings(s: DistillSettings, runtime: dict[str, Any]) -> TrainSettings:
    """The loop's slice of the step's settings, plus how to run it (checkpoints, device)."""
    keyed = s.model_dump(include=set(TrainSettings.model_fields))
    return TrainSettings(**keyed, **{k: v for k, v in runtime.items() if k in TrainSettings.model_fields})


def distill(s: DistillSettings, inputs: dict[str, Path], out_dir: Path,
            runtime: dict[str, Any]) -> dict[str, Any]:
    """Setup, train and save; in every process under a launcher, rank 0 writes the outputs."""
    import torch
    from accelerate import PartialState

    from pipeline.models.hf import load_causal_lm, load_tokenizer

    torch.set_num_threads(s.threads)
    tok, model = load_tokenizer(inputs["base"]), load_causal_lm(inputs["base"])
    prompt = s.student_prompt
    examples, prompts, skipped = kept_rows(tok, prompt, inputs["data"] / KEPT, s.max_seq_len)
    log("distill", f"{len(examples)} examples ({skipped} over max_seq_len skipped)")
    decision = read_doc(inputs["teacher_logits"] / TRAINING_MODE, TrainingMode)
    log("distill", f"mode {decision.mode}: {decision.reason}")
    held_out, held_prompts = held_out_rows(tok, prompt, inputs["eval"] / EVAL_FILE, s.eval_rows)
    kd = _kd(s, inputs, decision, tok, {"train": prompts, "eval": held_prompts})
    trained, summary = train(with_lora(model, s), examples, train_settings(s, runtime),
                             tok.pad_token_id, out_dir, held_out, kd)
    if not PartialState().is_main_process:
        return summary
    if s.lora_rank:
        trained = trained.merge_and_unload()  # later stages see a plain HF folder
    trained.eval()
    trained.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    (out_dir / PROMPT_FORMAT).write_text(json.dumps(
        prompt.format_file(tok.chat_template), indent=2, ensure_ascii=False))
    summary = {"mode": decision.mode, "examples": len(examples), "skipped_too_long": skipped,
               **({"lora_rank": s.lora_rank} if s.lora_rank else {}), **summary}
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    (out_dir / DISTILL_SUMMARY).write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    try:
        distill(DistillSettings.model_validate(job["settings"]),
                {k: Path(v) for k, v in job["inputs"].items()},
                Path(job["out_dir"]), job["runtime"])
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
