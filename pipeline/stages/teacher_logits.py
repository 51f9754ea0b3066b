"""Teacher-logits stage: decide sequence vs logit KD, and cache the teacher's top-k per reply token.

setup:   `distill.mode` = sequence | logits | auto. For logits/auto, compare the two
         tokenizers' actual token->id maps (pipeline.training.kd.choose_mode; a GGUF teacher's map is
         read from llama.cpp's vocabulary, no weights loaded) and trim padded logit rows.
run:     with `distill.teacher_logits = "cached"`, run the teacher over the reply tokens the
         student trains on (pipeline.training.sft_data), after the teacher's own few-shot prompt (the
         context it wrote them in), and keep, for every reply position, its top-k ids and
         log-probs; for the held-out eval answers too (KL during training).
         A GGUF teacher runs in llama.cpp with all logits on, reusing the KV cache of the
         prefix a row shares with the previous one (the system prompt); an HF folder runs in
         torch under no_grad. Shards of 16 rows are written atomically: a kill -9 loses at
         most the shard in progress, and the rerun resumes after the last one.
cleanup: decision.json (mode, reason, shared vocabulary) — read by the distill stage.
With mode = sequence, or `teacher_logits = "on_the_fly"` (distill runs the HF teacher
itself), only decision.json is written.

Example:
    distill-edge build --config examples/qwen-1.5b-to-0.5b.toml --target cpu-int4
    cat build/cache/teacher_logits/*/decision.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pipeline.config import BuildConfig
from pipeline.errors import UserError
from pipeline.generation.llm_batch import common_prefix
from pipeline.outputs import KEPT, TRAINING_MODE, TrainingMode, write_doc
from pipeline.prompts import ChatPrompt
from pipeline.stage import Runtime, Settings, StageContext
from pipeline.targets import Target
from pipeline.tasks.inputs import EVAL_FILE
from pipeline.training.kd import ModeDecision, choose_mode
from pipeline.training.sft_data import held_out_rows, kept_rows, teacher_prefix, teacher_view
from pipeline.training.topk_cache import write_shards


class ScoreRuntime(Runtime):
    threads: int | None = None  # llama.cpp threads scoring a GGUF teacher (None: 2)


class GgufVocab:
    """A GGUF model's token->id map, read through llama.cpp with vocab_only (no weights)."""

    def __init__(self, path: Path) -> None:
        import llama_cpp

        llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
        vocab = llm._model.vocab  # the C vocabulary handle; the Python wrapper decodes strictly
        self.rows = llm.n_vocab()
        self.map = {llama_cpp.llama_vocab_get_text(vocab, i).decode("utf-8", "replace"): i
                    for i in range(self.rows)}

    def get_vocab(self) -> dict[str, int]:
        return dict(self.map)


def _rows_of(folder: Path) -> int:
    return int(json.loads((folder / "config.json").read_text())["vocab_size"])


class TeacherLogitsSettings(Settings):
    """The mode decision and, for cached logits, what the teacher's top-k are computed over."""

    mode: str
    source: str  # distill.teacher_logits: cached | on_the_fly
    top_k: int
    backend: str
    max_seq_len: int
    eval_rows: int
    student_prompt: ChatPrompt
    teacher_prompt: ChatPrompt


def decide(s: TeacherLogitsSettings, inputs: dict[str, Path], student_tok: Any) -> ModeDecision:
    """The mode to train with; an HTTP teacher exposes no logits."""
    if s.mode == "sequence":
        return ModeDecision("sequence", "requested")
    teacher = inputs.get("teacher_model")
    if s.backend == "openai" or teacher is None:
        if s.mode == "logits":
            raise UserError("distill.mode = 'logits' needs a local teacher (llama_cpp or "
                            "transformers backend): an HTTP endpoint gives no logits")
        return ModeDecision("sequence", "the teacher is an HTTP endpoint: no logits")
    if teacher.is_dir():
        from pipeline.models.hf import load_tokenizer

        teacher_tok, teacher_rows = load_tokenizer(teacher), _rows_of(teacher)
    else:
        gguf = GgufVocab(teacher)
        teacher_tok, teacher_rows = gguf, gguf.rows
    return choose_mode(s.mode, student_tok, teacher_tok, _rows_of(inputs["base"]), teacher_rows)


def gguf_scorer(path: Path, n_ctx: int, threads: int) -> Any:
    """(ids, positions) -> teacher logits [len(positions), vocab] from llama.cpp, reusing the
    KV cache of the prefix shared with the previous row."""
    import llama_cpp
    import numpy as np
    import torch

    llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_batch=n_ctx, logits_all=True,
                          n_threads=threads, n_threads_batch=threads, verbose=False)
    previous: list[int] = []

    def score(ids: list[int], positions: list[int]) -> Any:
        nonlocal previous
        # Llama.eval starts at n_tokens and drops the KV cache past it: rows up to `keep`
        # (and their logits in llm.scores) are the previous row's, identical for a causal model.
        keep = common_prefix([previous, ids])  # ≥ 1 own token left to evaluate
        llm.n_tokens = keep
        llm.eval(ids[keep:])
        previous = list(ids)
        return torch.from_numpy(np.asarray(llm.scores[positions]))  # copies those rows only

    return score


def hf_scorer(folder: Path) -> Any:
    import torch

    from pipeline.models.hf import load_for_inference

    model, device = load_for_inference(folder)

    def score(ids: list[int], positions: list[int]) -> Any:
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids], device=device)).logits[0, positions].cpu()

    return score


class TeacherLogitsStage:
    name = "teacher_logits"
    libraries = ("torch", "transformers", "tokenizers", "safetensors", "llama_cpp_python")
    resumable = True  # finished shards survive a kill -9

    def settings(self, config: BuildConfig, target: Target) -> TeacherLogitsSettings:
        d = config.distill
        return TeacherLogitsSettings(
            mode=d.mode, source=d.teacher_logits, top_k=d.top_k, backend=config.teacher.backend,
            max_seq_len=d.max_seq_len, eval_rows=d.eval_rows or config.task.max_eval_rows,
            student_prompt=config.task.student_prompt, teacher_prompt=config.task.teacher_prompt)

    def runtime(self, config: BuildConfig, target: Target) -> ScoreRuntime:
        return ScoreRuntime(threads=config.teacher.threads)

    def run(self, ctx: StageContext[TeacherLogitsSettings, ScoreRuntime]) -> TrainingMode:
        from pipeline.models.hf import load_tokenizer

        s = ctx.settings
        tok = load_tokenizer(ctx.inputs["base"])
        decision = decide(s, ctx.inputs, tok)
        ctx.log(f"mode {decision.mode}: {decision.reason}")
        summary = TrainingMode(mode=decision.mode, reason=decision.reason,
                               shared_vocab=decision.shared_vocab, source=s.source)
        if decision.mode == "logits" and s.source == "cached":
            summary = self._score(ctx, tok, decision.shared_vocab or 0, summary)
        write_doc(ctx.out_dir / TRAINING_MODE, summary)
        return summary

    def _score(self, ctx: StageContext[TeacherLogitsSettings, ScoreRuntime], tok: Any,
               shared: int, mode: TrainingMode) -> TrainingMode:
        s, teacher = ctx.settings, ctx.inputs["teacher_model"]
        student, teacher_p = s.student_prompt, s.teacher_prompt
        train_rows, train_prompts, _ = kept_rows(tok, student, ctx.inputs["data"] / KEPT,
                                                 s.max_seq_len)
        held_rows, held_prompts = held_out_rows(tok, student, ctx.inputs["eval"] / EVAL_FILE,
                                                  s.eval_rows)
        # the student's reply tokens after the teacher's own (few-shot) prompt
        train = [teacher_view(teacher_prefix(tok, teacher_p, p), ex)
                 for ex, p in zip(train_rows, train_prompts, strict=True)]
        held = [teacher_view(teacher_prefix(tok, teacher_p, p), ex)
                for ex, p in zip(held_rows, held_prompts, strict=True)]
        longest = max(len(ids) for ids, _ in train + held)
        score = (hf_scorer(teacher) if teacher.is_dir() else
                 gguf_scorer(teacher, longest + 8, ctx.runtime.threads or 2))
        start = time.perf_counter()
        positions = sum(write_shards(ctx.out_dir, split, rows, score, s.top_k, shared, ctx.log)
                        for split, rows in (("train", train), ("eval", held)))
        wall = time.perf_counter() - start
        return mode.model_copy(update={
            "train_rows": len(train), "eval_rows": len(held), "positions_scored": positions,
            "top_k": s.top_k, "score_wall_s": round(wall, 1)})
