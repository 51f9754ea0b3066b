"""Distill stage: train the student on the kept teacher rows — sequence-level KD (fine-tune on
the teacher's text), optionally with logit-level KD against the teacher's distribution.

setup:   load the student base folder and tokenizer; render every kept row with the
         student's chat template and its short system prompt (not the teacher's few-shot
         prompt: context distillation), loss masked to the response tokens. The mode comes
         from the teacher_logits stage's decision.json (sequence, or logits with the shared
         vocabulary and, when cached, the teacher's top-k per reply token); with
         `teacher_logits = "on_the_fly"` the HF teacher is loaded here, frozen. With
         `lora_rank > 0` the student gets LoRA adapters on every linear projection (peft).
run:     pipeline.training.trainer: AdamW + cosine on accelerate's device, bf16 autocast only where
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

from pipeline.config import BuildConfig
from pipeline.errors import UserError
from pipeline.outputs import DISTILL_SUMMARY, KEPT, TRAIN_LOG, TrainingSummary, read_doc
from pipeline.precision import planned
from pipeline.stage import Runtime, StageContext
from pipeline.targets import Target
from pipeline.training.distill_job import DistillSettings, distill


class DistillRuntime(Runtime):
    """How to train, not what (outside the cache key; the precision it implies is keyed):
    `[distill]` keys of the same names."""

    launcher: str | None = None  # e.g. "accelerate launch": train under it, as a module
    checkpoint_every: int | None = None
    device: str | None = None


RUNTIME_ONLY = tuple(DistillRuntime.model_fields)  # [distill] keys left out of the cache key


def _launch(ctx: StageContext[DistillSettings, DistillRuntime]) -> TrainingSummary:
    """Run `distill` under the user's launcher (accelerate launch / torchrun) as a module."""
    job = ctx.out_dir / "job.json"
    job.write_text(json.dumps({"settings": ctx.settings.key_dict(), "runtime": ctx.runtime.model_dump(),
                               "inputs": {k: str(v) for k, v in ctx.inputs.items()},
                               "out_dir": str(ctx.out_dir)}))
    cmd = [*shlex.split(ctx.runtime.launcher or ""), "-m", "pipeline.training.distill_job", str(job)]
    beside = Path(sys.executable).with_name(cmd[0])  # the venv's own accelerate/torchrun
    if shutil.which(cmd[0]) is None and beside.is_file():
        cmd[0] = str(beside)
    ctx.log("launching: " + " ".join(cmd))
    try:
        code = subprocess.run(cmd, check=False).returncode
    except FileNotFoundError:
        raise UserError(f"distill.launcher: command not found: {cmd[0]}") from None
    job.unlink()
    if code != 0:  # a crash in training is ours, not the input's: exit 1, not 2
        raise RuntimeError(f"distill training under '{ctx.runtime.launcher}' failed "
                           f"(exit {code}; its traceback is above)")
    return read_doc(ctx.out_dir / DISTILL_SUMMARY, TrainingSummary)


class DistillStage:
    name = "distill"
    libraries = ("torch", "transformers", "safetensors", "tokenizers", "peft", "accelerate")
    resumable = True  # checkpoints in the partial folder survive a kill -9
    # tokens/s and elapsed seconds beside the losses; the weights are the output
    measurements = (DISTILL_SUMMARY, TRAIN_LOG)

    def settings(self, config: BuildConfig, target: Target) -> DistillSettings:
        d = config.distill
        return DistillSettings(**{
            # `seeds`: how many students the runner trains, each step keyed on its own seed
            **d.model_dump(exclude={*RUNTIME_ONLY, "seeds"}),
            "eval_rows": d.eval_rows or config.task.max_eval_rows,
            # the device and precision training will use here: keyed, so a student trained
            # in bf16 on one CPU is not reused on a CPU that would train it in fp32
            "trained_as": planned(d.bf16, d.device),
            "max_new_tokens": config.teacher.max_tokens,
            "student_prompt": config.task.student_prompt,
            "teacher_prompt": config.task.teacher_prompt})

    def runtime(self, config: BuildConfig, target: Target) -> DistillRuntime:
        return DistillRuntime(**config.distill.model_dump(include=set(RUNTIME_ONLY)))

    def run(self, ctx: StageContext[DistillSettings, DistillRuntime]) -> TrainingSummary:
        if not (ctx.inputs["data"] / KEPT).is_file():  # distill_labels without labelled rows
            return TrainingSummary(skipped="no training rows")
        if ctx.runtime.launcher:
            return _launch(ctx)
        return TrainingSummary.model_validate(
            distill(ctx.settings, ctx.inputs, ctx.out_dir, ctx.runtime.model_dump()))
