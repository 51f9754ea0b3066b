"""Distill mechanics on a tiny llama: loss masked to the reply, loss goes down, logit KD
against a cached or live teacher, LoRA merged, kill -9 and resume, 2 processes under accelerate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from pipeline.models.hf import load_causal_lm, load_tokenizer
from pipeline.prompts import ChatPrompt
from pipeline.training.sft_data import IGNORE, collate, encode_example, reply_ce
from pipeline.training.trainer import (
    KD,
    TrainSettings,
    _batch_of,
    evaluate,
    steps_per_epoch,
    train,
)

ROOT = Path(__file__).resolve().parents[1]

SYSTEM = "Extract the order as JSON."
REPLY = '{"name":"Ann Lee","item":"lamps","quantity":2,"city":"Oslo","date":"2025-03-04"}'


def test_labels_cover_only_the_reply(tiny_hf: Path) -> None:
    tok = load_tokenizer(tiny_hf)
    ids, labels = encode_example(tok, ChatPrompt(system=SYSTEM), "Ann Lee wants 2 lamps", REPLY)
    assert len(ids) == len(labels)
    first = next(i for i, label in enumerate(labels) if label != IGNORE)
    assert all(label == IGNORE for label in labels[:first])
    assert labels[first:] == ids[first:]
    reply_text = tok.decode(ids[first:])
    assert reply_text.startswith(REPLY) and "<|im_end|>" in reply_text
    assert "system" in tok.decode(ids[:first])


def test_a_few_steps_reduce_the_loss(tiny_hf: Path, tmp_path: Path) -> None:
    tok = load_tokenizer(tiny_hf)
    model = load_causal_lm(tiny_hf)
    examples = [encode_example(tok, ChatPrompt(system=SYSTEM), f"order {i}", REPLY) for i in range(4)]
    settings = {"seed": 0, "batch_size": 4, "epochs": 12, "learning_rate": 2e-2,
                "weight_decay": 0.0, "warmup_ratio": 0.0, "bf16": False}
    before = [p.detach().clone() for p in model.parameters()]
    _, summary = train(model, examples, TrainSettings(**settings), tok.pad_token_id, tmp_path)
    assert summary["steps"] == 12
    assert summary["final_loss"] < summary["first_loss"] * 0.7
    log = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_reply_only_logits_give_the_models_own_loss_and_gradients(tiny_hf: Path) -> None:
    """The LM head runs only from the first reply position on; the loss and every gradient
    equal HF's full-logits loss (prompts of different lengths, right padding, one row whose
    reply starts late)."""
    tok = load_tokenizer(tiny_hf)
    model = load_causal_lm(tiny_hf)
    texts = ["Ann Lee wants 2 lamps", "order " * 12 + "for Bo Li, 3 desks to Oslo", "hi"]
    batch = collate([encode_example(tok, ChatPrompt(system=SYSTEM), t, REPLY) for t in texts],
                    tok.pad_token_id)
    full = model(**batch).loss
    full.backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    mine = reply_ce(model, batch)
    mine.backward()
    assert torch.allclose(mine, full, atol=1e-6)
    for a, b in zip(want, [p.grad for p in model.parameters()], strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def _epoch(lengths: list[int] | int, seed: int, epochs: int = 1) -> list[list[int]]:
    n = lengths if isinstance(lengths, int) else len(lengths)
    per_epoch, gen = steps_per_epoch(n, 4, 1), torch.Generator().manual_seed(seed)
    state: dict[str, Any] = {"step": 0, "order": None}
    batches = []
    for step in range(per_epoch * epochs):
        state["step"] = step
        batches.append(_batch_of(state, n, 4, per_epoch, 1, 0, gen,
                                 None if isinstance(lengths, int) else lengths))
    return batches


def test_length_grouped_batches_cover_every_example_with_less_padding() -> None:
    """Grouped batches (group_by_length) still show each example once per epoch,
    in a seeded order that changes per epoch, and pad far less than random batches."""
    lengths = [int(x) for x in torch.randint(20, 200, (37,), generator=torch.Generator().manual_seed(1))]

    def padded(batches: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    grouped, plain = _epoch(lengths, 0, 2), _epoch(len(lengths), 0, 2)
    for run in (grouped, plain):
        assert sorted(i for b in run[:10] for i in b) == list(range(37))
        assert sorted(i for b in run[10:] for i in b) == list(range(37))
    assert grouped[:10] != grouped[10:] and grouped == _epoch(lengths, 0, 2)
    assert padded(grouped) < 0.9 * padded(plain)


@pytest.mark.parametrize(("eval_every", "steps"), [(0, [0, 6]), (2, [0, 2, 4, 6])])
def test_held_out_loss_logged_before_between_and_after(tiny_hf: Path, tmp_path: Path,
                                                        eval_every: int, steps: list[int]) -> None:
    """The eval loss is logged before and after training (eval_every = 0, the default: a
    held-out pass costs a third of an epoch's compute on the default task) or every
    eval_every steps, and it falls when the held-out answers are like the training ones
    (here: the same reply to other orders)."""
    tok = load_tokenizer(tiny_hf)
    model = load_causal_lm(tiny_hf)
    examples = [encode_example(tok, ChatPrompt(system=SYSTEM), f"order {i}", REPLY) for i in range(4)]
    held_out = [encode_example(tok, ChatPrompt(system=SYSTEM), f"another order {i}", REPLY) for i in range(3)]
    settings = {"seed": 0, "batch_size": 2, "epochs": 3, "learning_rate": 2e-2,
                "weight_decay": 0.0, "warmup_ratio": 0.0, "bf16": False, "eval_every": eval_every}
    first = evaluate(model, held_out, TrainSettings(**settings), tok.pad_token_id)["eval_loss"]
    _, summary = train(model, examples, TrainSettings(**settings), tok.pad_token_id, tmp_path, held_out)
    log = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "eval_loss" in r]
    assert [r["step"] for r in evals] == steps
    assert abs(evals[0]["eval_loss"] - first) < 1e-4 and summary["first_eval_loss"] == round(first, 4)
    assert summary["final_eval_loss"] < 0.7 * summary["first_eval_loss"]


@pytest.fixture(scope="module")
def tiny_teacher(tiny_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another random model over the same tokenizer, trained a little on the reply so its
    distribution is sharp and differs from the student's."""
    out = tmp_path_factory.mktemp("tiny-teacher")
    tok, model = load_tokenizer(tiny_hf), load_causal_lm(tiny_hf)
    examples = [encode_example(tok, ChatPrompt(system=SYSTEM), f"order {i}", REPLY) for i in range(4)]
    settings = {"seed": 1, "batch_size": 4, "epochs": 20, "learning_rate": 2e-2,
                "weight_decay": 0.0, "warmup_ratio": 0.0, "bf16": False}
    trained, _ = train(model, examples, TrainSettings(**settings), tok.pad_token_id,
                       tmp_path_factory.mktemp("t"))
    trained.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def _kd_setup(tiny_hf: Path, teacher: Path, tmp_path: Path, cached: bool) -> tuple[Any, ...]:
    from pipeline.stages.teacher_logits import hf_scorer
    from pipeline.training.topk_cache import load_cached, write_shards

    tok = load_tokenizer(tiny_hf)
    examples = [encode_example(tok, ChatPrompt(system=SYSTEM), f"order {i}", REPLY) for i in range(4)]
    held_out = [encode_example(tok, ChatPrompt(system=SYSTEM), f"another order {i}", REPLY) for i in range(2)]
    n = len(tok)
    kd = KD("forward_kl", 1.0, 1.0, 0.5, n)
    if cached:
        score = hf_scorer(teacher)
        for split, rows in (("train", examples), ("eval", held_out)):
            write_shards(tmp_path, split, rows, score, 32, n, lambda _: None)
        kd.cached = load_cached(tmp_path)
    else:
        kd.teacher = load_causal_lm(teacher).eval().requires_grad_(False)
    return tok, examples, held_out, kd


@pytest.mark.parametrize("cached", [True, False])
def test_logit_kd_pulls_the_student_to_the_teacher(tiny_hf: Path, tiny_teacher: Path,
                                                   tmp_path: Path, cached: bool) -> None:
    """Pure KD (weight 1) lowers the held-out KL to the teacher, from cached top-32 log-probs
    or the live teacher; the teacher's weights never change."""
    tok, examples, held_out, kd = _kd_setup(tiny_hf, tiny_teacher, tmp_path, cached)
    teacher_before = load_file(tiny_teacher / "model.safetensors")
    settings = {"seed": 0, "batch_size": 2, "epochs": 4, "learning_rate": 2e-2,
                "weight_decay": 0.0, "warmup_ratio": 0.0, "bf16": False}
    _, summary = train(load_causal_lm(tiny_hf), examples, TrainSettings(**settings), tok.pad_token_id,
                       tmp_path / "run", held_out, kd)
    assert summary["final_eval_kl"] < 0.5 * summary["first_eval_kl"], summary
    if kd.teacher is not None:
        assert all(torch.equal(teacher_before[n], p) for n, p in kd.teacher.named_parameters()
                   if n in teacher_before)


def test_cached_top_k_positions_line_up_with_the_batch(tiny_hf: Path, tiny_teacher: Path,
                                                       tmp_path: Path) -> None:
    """The cache holds one top-k row per reply position, in the order the loss reads them,
    and its best id is the live teacher's argmax there."""
    tok, examples, _, kd = _kd_setup(tiny_hf, tiny_teacher, tmp_path, cached=True)
    teacher = load_causal_lm(tiny_teacher).eval()
    ids, labels = examples[1]
    top_ids, top_logp = kd.cached["train"][1]
    reply = [t for t in range(len(labels) - 1) if labels[t + 1] != IGNORE]
    assert top_ids.shape == (len(reply), 32) and top_logp.dtype == torch.float32
    with torch.no_grad():
        live = teacher(input_ids=torch.tensor([ids])).logits[0, reply].argmax(-1)
    assert torch.equal(top_ids[:, 0].long(), live)


def _run_tiny(model: Path, out: Path, *extra: str, launcher: list[str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    cmd = [*(launcher or [sys.executable]), str(ROOT / "tests" / "train_tiny.py"), str(model),
           str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)


def test_kill_9_then_resume_reaches_the_same_weights(tiny_hf: Path, tmp_path: Path) -> None:
    """A run SIGKILLed at step 5 (checkpoint at step 4) resumes to the very weights and
    loss curve of an uninterrupted run with the same seed."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert _run_tiny(tiny_hf, whole).returncode == 0
    proc = _run_tiny(tiny_hf, killed, "--kill-at", "5")
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert [p.name for p in (killed / "checkpoints").iterdir()] == ["step-000004"]
    assert not (killed / "summary.json").exists()
    assert _run_tiny(tiny_hf, killed).returncode == 0
    a, b = load_file(whole / "weights-rank0.safetensors"), load_file(killed / "weights-rank0.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    curve = [(x["step"], x.get("loss", x.get("eval_loss")))
             for x in map(json.loads, (killed / "train_log.jsonl").read_text().splitlines())]
    whole_curve = [(x["step"], x.get("loss", x.get("eval_loss")))
                   for x in map(json.loads, (whole / "train_log.jsonl").read_text().splitlines())]
    assert curve == whole_curve


def test_two_cpu_processes_under_accelerate_launch(tiny_hf: Path, tmp_path: Path) -> None:
    """The same loop under `accelerate launch` with 2 processes: DDP over gloo, the same
    number of steps, identical weights on both ranks, and the held-out loss still falls."""
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    launcher = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no"]
    proc = _run_tiny(tiny_hf, tmp_path, launcher=launcher)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["backend"] == "gloo" and summary["steps"] == 9
    assert summary["final_eval_loss"] < 0.8 * summary["first_eval_loss"]
    r0 = load_file(tmp_path / "weights-rank0.safetensors")
    r1 = load_file(tmp_path / "weights-rank1.safetensors")
    assert all(torch.equal(r0[k], r1[k]) for k in r0)


def test_stages_auto_logits_with_lora_give_a_plain_merged_folder(
        tiny_hf: Path, tiny_teacher: Path, tmp_path: Path) -> None:
    """teacher_logits + distill as the runner calls them: `auto` finds one vocabulary and
    caches the teacher's top-k; distill trains LoRA adapters with KD and saves a merged,
    plain HF folder (no adapter files) whose weights moved and that loads on its own."""
    from pipeline.config import load_config
    from pipeline.stage import StageContext
    from pipeline.stages import REGISTRY
    from pipeline.targets import load_target

    data = tmp_path / "filter"
    data.mkdir()
    rows = [{"prompt": f"Ann Lee wants {i} lamps in Oslo on 2025-03-04", "response": REPLY}
            for i in range(6)]
    (data / "kept.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    evals = tmp_path / "eval_set"
    evals.mkdir()
    (evals / "eval.jsonl").write_text(json.dumps({"prompt": "Bo wants 2 lamps", "answer": REPLY}) + "\n")
    cfg = load_config(None).model_copy(update={"distill": load_config(None).distill.model_copy(
        update={"mode": "auto", "lora_rank": 4, "epochs": 2, "batch_size": 3, "bf16": False,
                "learning_rate": 1e-2, "top_k": 16})})
    target = load_target("cpu-int4")
    inputs = {"teacher_model": tiny_teacher, "base": tiny_hf, "data": data, "eval": evals}
    outs = {}
    for name in ("teacher_logits", "distill"):
        stage = REGISTRY[name]
        out = outs[name] = tmp_path / name
        out.mkdir()
        ctx = StageContext(name, stage.settings(cfg, target), {**inputs, **outs}, out,
                           stage.runtime(cfg, target))
        summary = stage.run(ctx).model_dump()
    decision = json.loads((outs["teacher_logits"] / "decision.json").read_text())
    assert decision["mode"] == "logits" and decision["train_rows"] == 6 and decision["eval_rows"] == 1
    assert summary["mode"] == "logits" and summary["lora_rank"] == 4 and "final_eval_kl" in summary
    files = {p.name for p in outs["distill"].iterdir()}
    assert "model.safetensors" in files and not any("adapter" in f for f in files)
    assert "checkpoints" not in files
    merged, base = load_causal_lm(outs["distill"]), load_file(tiny_hf / "model.safetensors")
    moved = [n for n, p in merged.named_parameters() if n in base and not torch.equal(base[n], p)]
    assert any("q_proj" in n for n in moved) and not any("lora" in n for n, _ in merged.named_parameters())


def test_on_policy_steps_train_on_student_samples(tiny_hf: Path, tiny_teacher: Path,
                                                  tmp_path: Path) -> None:
    """GKD with λ = 1: every step samples the student's own reply and the live teacher scores
    it; the steps are marked in the log and the KL to the teacher on held-out answers falls."""
    tok, examples, held_out, kd = _kd_setup(tiny_hf, tiny_teacher, tmp_path, cached=False)
    kd.on_policy, kd.max_new_tokens = 1.0, 12
    settings = {"seed": 0, "batch_size": 2, "epochs": 3, "learning_rate": 2e-2,
                "weight_decay": 0.0, "warmup_ratio": 0.0, "bf16": False}
    _, summary = train(load_causal_lm(tiny_hf), examples, TrainSettings(**settings), tok.pad_token_id,
                       tmp_path / "run", held_out, kd)
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert all(r.get("on_policy") for r in log if "loss" in r) and summary["steps"] == 6
    assert summary["final_eval_kl"] < summary["first_eval_kl"], summary


def test_gguf_teacher_vocab_and_prefix_reuse(smollm_gguf: Path, tiny_hf: Path) -> None:
    """A GGUF teacher's token->id map comes from llama.cpp (no weights); scoring a row that
    shares a prefix with the previous one reuses its KV cache and gives the logits a fresh
    context gives."""
    from pipeline.stages.teacher_logits import (
        GgufVocab,
        TeacherLogitsSettings,
        decide,
        gguf_scorer,
    )

    tok = load_tokenizer(tiny_hf)
    settings = TeacherLogitsSettings.model_construct(mode="auto", backend="llama_cpp")  # decide() reads 2
    decision = decide(settings, {"teacher_model": smollm_gguf, "base": tiny_hf}, tok)
    assert decision.mode == "logits" and decision.shared_vocab == GgufVocab(smollm_gguf).rows
    a, _ = encode_example(tok, ChatPrompt(system=SYSTEM), "Ann Lee wants 2 lamps", REPLY)
    b, _ = encode_example(tok, ChatPrompt(system=SYSTEM), "Bo Chen wants 3 desks", REPLY)
    everywhere = list(range(len(b)))
    warm = gguf_scorer(smollm_gguf, 256, 2)
    warm(a, [0])
    reused = warm(b, everywhere)
    fresh = gguf_scorer(smollm_gguf, 256, 2)(b, everywhere)
    assert reused.shape == (len(b), decision.shared_vocab)
    assert torch.allclose(reused, fresh, atol=1e-3)


def test_teacher_scores_the_reply_in_its_own_prompt(tiny_hf: Path, tiny_teacher: Path,
                                                    tmp_path: Path) -> None:
    """Context distillation: the teacher's view is its few-shot prompt + the same reply tokens
    (same count of reply positions), and the cached top-k (all ids) of that view gives the
    KD loss the live teacher with the same prompts gives."""
    from pipeline.prompts import Turn
    from pipeline.stages.teacher_logits import hf_scorer
    from pipeline.training.sft_data import collate, reply_positions, teacher_prefix, teacher_view
    from pipeline.training.topk_cache import load_cached, write_shards
    from pipeline.training.trainer import _kd_term

    tok = load_tokenizer(tiny_hf)
    s = ChatPrompt(system="You extract orders.", user_template="Order: {prompt}",
                   few_shot=(Turn(user="Bo wants 1 desk", assistant='{"item":"desk"}'),))
    prompts = [f"order {i}" for i in range(3)]
    examples = [encode_example(tok, ChatPrompt(system=SYSTEM), p, REPLY) for p in prompts]
    prefixes = [teacher_prefix(tok, s, p) for p in prompts]
    views = [teacher_view(pre, ex) for pre, ex in zip(prefixes, examples, strict=True)]
    for (_ids, labels), (t_ids, t_labels), pre in zip(examples, views, prefixes, strict=True):
        assert t_ids[: len(pre)] == pre and "Bo wants 1 desk" in tok.decode(pre)
        assert len(reply_positions(t_labels)) == len(reply_positions(labels))
        assert [t for t in t_labels if t != IGNORE] == [t for t in labels if t != IGNORE]
    n = len(tok)
    write_shards(tmp_path, "train", views, hf_scorer(tiny_teacher), n, n, lambda _: None)
    cached = KD("forward_kl", 1.0, 1.0, 0.5, n, cached=load_cached(tmp_path))
    live = KD("forward_kl", 1.0, 1.0, 0.5, n, teacher=load_causal_lm(tiny_teacher).eval(),
              pad_id=tok.pad_token_id, prefixes={"train": prefixes})
    batch = collate(examples, tok.pad_token_id)
    with torch.no_grad():
        logits = load_causal_lm(tiny_hf)(**batch).logits
    idx = [0, 1, 2]
    a = float(_kd_term(cached, logits, batch, examples, idx, "train"))
    b = float(_kd_term(live, logits, batch, examples, idx, "train"))
    assert abs(a - b) < 1e-3 * max(1.0, abs(b)), (a, b)


def test_distill_step_under_an_accelerate_launcher(tiny_hf: Path, tmp_path: Path) -> None:
    """`[distill] launcher` runs the step's training in 2 processes (the venv's accelerate is
    found without an activated venv); rank 0 writes the usual folder and summary."""
    from pipeline.config import load_config
    from pipeline.stage import StageContext
    from pipeline.stages import REGISTRY
    from pipeline.targets import load_target

    data = tmp_path / "filter"
    data.mkdir()
    rows = [{"prompt": f"Ann Lee wants {i} lamps", "response": REPLY} for i in range(8)]
    (data / "kept.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    evals = tmp_path / "eval_set"
    evals.mkdir()
    (evals / "eval.jsonl").write_text(json.dumps({"prompt": "Bo wants 2 lamps", "answer": REPLY}) + "\n")
    base = load_config(None)
    launcher = ("accelerate launch --multi_gpu --num_processes 2 --num_machines 1 "
                "--mixed_precision no --dynamo_backend no")
    cfg = base.model_copy(update={"distill": base.distill.model_copy(update={
        "epochs": 1, "batch_size": 4, "bf16": False, "threads": 1, "launcher": launcher})})
    target = load_target("cpu-int4")
    inputs = {"base": tiny_hf, "data": data, "eval": evals}
    for name in ("teacher_logits", "distill"):
        stage, out = REGISTRY[name], tmp_path / name
        out.mkdir()
        summary = stage.run(StageContext(name, stage.settings(cfg, target), inputs, out,
                                         stage.runtime(cfg, target))).model_dump()
        inputs[name] = out
    assert summary["processes"] == 2 and summary["backend"] == "gloo" and summary["steps"] == 2
    assert (tmp_path / "distill" / "model.safetensors").is_file()
    assert not (tmp_path / "distill" / "job.json").exists()
