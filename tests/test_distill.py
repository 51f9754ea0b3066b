"""Distill mechanics on a tiny llama: loss masked to the reply, loss goes down."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pipeline.models.hf import load_causal_lm, load_tokenizer
from pipeline.stages.distill import IGNORE, encode_example, train

SYSTEM = "Extract the order as JSON."
REPLY = '{"name":"Ann Lee","item":"lamps","quantity":2,"city":"Oslo","date":"2025-03-04"}'


def test_labels_cover_only_the_reply(tiny_hf: Path) -> None:
    tok = load_tokenizer(tiny_hf)
    ids, labels = encode_example(tok, SYSTEM, "Ann Lee wants 2 lamps", REPLY)
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
    examples = [encode_example(tok, SYSTEM, f"order {i}", REPLY) for i in range(4)]
    settings = {"seed": 0, "batch_size": 4, "epochs": 12, "learning_rate": 2e-2,
                "weight_decay": 0.0, "warmup_ratio": 0.0, "bf16": False}
    before = [p.detach().clone() for p in model.parameters()]
    summary = train(model, examples, settings, tok.pad_token_id, tmp_path / "log.jsonl")
    assert summary["steps"] == 12
    assert summary["final_loss"] < summary["first_loss"] * 0.7
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_held_out_loss_logged_per_epoch(tiny_hf: Path, tmp_path: Path) -> None:
    """The eval loss is logged before training and after every epoch, and it falls when the
    held-out answers are like the training ones (here: the same reply to other orders)."""
    from pipeline.stages.distill import eval_loss

    tok = load_tokenizer(tiny_hf)
    model = load_causal_lm(tiny_hf)
    examples = [encode_example(tok, SYSTEM, f"order {i}", REPLY) for i in range(4)]
    held_out = [encode_example(tok, SYSTEM, f"another order {i}", REPLY) for i in range(3)]
    settings = {"seed": 0, "batch_size": 2, "epochs": 3, "learning_rate": 2e-2,
                "weight_decay": 0.0, "warmup_ratio": 0.0, "bf16": False}
    first = eval_loss(model, held_out, settings, tok.pad_token_id)
    summary = train(model, examples, settings, tok.pad_token_id, tmp_path / "log.jsonl", held_out)
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "eval_loss" in r]
    assert [r["step"] for r in evals] == [0, 2, 4, 6]  # before training, then each epoch
    assert abs(evals[0]["eval_loss"] - first) < 1e-4 and summary["first_eval_loss"] == round(first, 4)
    assert summary["final_eval_loss"] < 0.7 * summary["first_eval_loss"]
