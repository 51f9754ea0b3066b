"""Logit KD (issue 4, first increment): the mode decision from real token->id maps, and each
loss against a value computed by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pipeline.errors import UserError
from pipeline.training.kd import choose_mode, kd_loss, kd_loss_topk, topk, trim


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


def test_gguf_padding_fillers_are_not_a_different_vocabulary() -> None:
    """A GGUF teacher lists "[PAD3]".. fillers up to its logit rows; the same model's HF
    tokenizer does not. Fillers past the other map are padding, trimmed; a filler-looking token
    inside the other's range still counts as a difference."""
    hf = _Tok({"a": 0, "b": 1, "c": 2})
    gguf = _Tok({"a": 0, "b": 1, "c": 2, "[PAD3]": 3, "[PAD4]": 4})
    decision = choose_mode("auto", hf, gguf, student_rows=5, teacher_rows=5)
    assert decision.mode == "logits" and decision.shared_vocab == 3
    clash = _Tok({"a": 0, "[PAD1]": 1, "c": 2})
    assert choose_mode("auto", hf, clash, 3, 3).mode == "sequence"


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


@pytest.mark.parametrize("loss", ["forward_kl", "reverse_kl", "jsd"])
def test_top_k_with_every_id_is_the_dense_loss(loss: str) -> None:
    """A cache of all V ids is no approximation: the sparse loss equals the dense one."""
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 7), torch.randn(6, 7)
    ids, logp = topk(teacher, 7)
    assert math.isclose(float(logp.exp().sum(-1)[0]), 1.0, rel_tol=1e-5)  # full-softmax log-probs
    dense = kd_loss(student, teacher, torch.ones(6, dtype=torch.bool), loss, 2.0, 0.3)
    sparse = kd_loss_topk(student, ids, logp, loss, 2.0, 0.3)
    assert math.isclose(float(dense), float(sparse), rel_tol=1e-4)


def test_top_k_forward_kl_by_hand() -> None:
    """k = 2 of 3 ids: the teacher is renormalised over its two ids; the student's full
    log-probs are scored there (its mass on the third id still costs)."""
    student = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    ids = torch.tensor([[0, 1]], dtype=torch.int32)
    logp = torch.log(torch.tensor([[0.6, 0.2]]))  # the teacher's top-2 (0.2 left elsewhere)
    q = (0.75, 0.25)
    expected = q[0] * math.log(q[0] / 0.5) + q[1] * math.log(q[1] / 0.3)
    assert math.isclose(float(kd_loss_topk(student, ids, logp, "forward_kl")), expected, rel_tol=1e-5)
    student.requires_grad_(True)
    kd_loss_topk(student, ids, logp, "reverse_kl").backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
