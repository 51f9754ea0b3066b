"""Logit KD (issue 4, first increment): the mode decision from real token->id maps, and each
loss against a value computed by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pipeline.errors import UserError
from pipeline.kd import choose_mode, kd_loss, trim


class _Tok:
    def __init__(self, vocab: dict[str, int]) -> None:
        self.vocab = vocab

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)


def test_auto_picks_logits_for_the_same_tokenizer(tiny_hf: Path) -> None:
    from pipeline.models.hf import load_tokenizer

    a, b = load_tokenizer(tiny_hf), load_tokenizer(tiny_hf)
    n = max(a.get_vocab().values()) + 1
    decision = choose_mode("auto", a, b, n, n)
    assert decision.mode == "logits" and decision.shared_vocab == n


def test_auto_trims_padded_rows_of_one_family() -> None:
    """Same map, padded logit rows (Qwen2.5 0.5B vs 1.5B style): trimmed, not refused."""
    tok = _Tok({"a": 0, "b": 1, "c": 2})
    decision = choose_mode("auto", tok, tok, student_rows=8, teacher_rows=16)
    assert decision.mode == "logits" and decision.shared_vocab == 3
    assert "trimmed to the 3 shared ids" in decision.reason
    assert trim(torch.zeros(2, 5, 16), decision.shared_vocab).shape == (2, 5, 3)


def test_auto_falls_back_to_sequence_for_different_tokenizers() -> None:
    student, teacher = _Tok({"a": 0, "b": 1, "c": 2}), _Tok({"a": 0, "c": 1, "b": 2})
    decision = choose_mode("auto", student, teacher, 3, 3)  # same size, other ids
    assert decision.mode == "sequence" and "2 tokens" in decision.reason
    with pytest.raises(UserError, match="distill.mode = 'logits' needs one vocabulary"):
        choose_mode("logits", student, teacher, 3, 3)
    assert choose_mode("sequence", student, student, 3, 3).reason == "requested"


def _two_positions() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # position 0: student p = (1/4, 3/4), teacher q = (1/2, 1/2); position 1 is masked out
    student = torch.log(torch.tensor([[[0.25, 0.75], [0.9, 0.1]]]))
    teacher = torch.log(torch.tensor([[[0.5, 0.5], [0.1, 0.9]]]))
    return student, teacher, torch.tensor([[True, False]])


def test_forward_and_reverse_kl_by_hand() -> None:
    s, t, mask = _two_positions()
    forward = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    reverse = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert math.isclose(float(kd_loss(s, t, mask, "forward_kl")), forward, rel_tol=1e-5)
    assert math.isclose(float(kd_loss(s, t, mask, "reverse_kl")), reverse, rel_tol=1e-5)


def test_jsd_by_hand_and_temperature_scaling() -> None:
    s, t, mask = _two_positions()
    beta, p, q = 0.3, (0.25, 0.75), (0.5, 0.5)
    m = [beta * qi + (1 - beta) * pi for pi, qi in zip(p, q, strict=True)]
    kl_t = sum(qi * math.log(qi / mi) for qi, mi in zip(q, m, strict=True))
    kl_s = sum(pi * math.log(pi / mi) for pi, mi in zip(p, m, strict=True))
    expected = beta * kl_t + (1 - beta) * kl_s
    assert math.isclose(float(kd_loss(s, t, mask, "jsd", beta=beta)), expected, rel_tol=1e-5)
    # at temperature 2 both distributions soften: logits / 2, loss × 4
    soft_p = torch.softmax(s[0, 0] / 2, -1)
    soft_q = torch.softmax(t[0, 0] / 2, -1)
    soft = float((soft_q * (soft_q.log() - soft_p.log())).sum()) * 4
    assert math.isclose(float(kd_loss(s, t, mask, "forward_kl", temperature=2.0)), soft,
                        rel_tol=1e-5)


def test_gradients_reach_only_the_student() -> None:
    student = torch.randn(2, 3, 5, requires_grad=True)
    teacher = torch.randn(2, 3, 5, requires_grad=True)
    for loss in ("forward_kl", "reverse_kl", "jsd"):
        student.grad = None
        kd_loss(student, teacher, torch.ones(2, 3, dtype=torch.bool), loss).backward()
        assert student.grad is not None and student.grad.abs().sum() > 0
        assert teacher.grad is None
