"""Logit-level knowledge distillation: whether a teacher/student pair allows it, and its losses.

`choose_mode` decides between sequence-level KD (fine-tune on the teacher's text; works for
any pair) and logit-level KD (match the teacher's next-token distribution) from the two
tokenizers' actual token->id maps — never from `config.vocab_size`, which differs even
within one family because logit rows are padded (Qwen2.5: 151,936 vs 152,064 rows over one
token map; the trl#2215 / torchtune#2119 failure). Rows past the shared map are padding
and are trimmed from both models' logits (`trim`).

Losses, per response token (mask), averaged over those tokens, at temperature τ (both
distributions softened, the loss scaled by τ² so its gradients keep their size, as in Hinton's KD):
  forward_kl  KL(p_T ‖ p_S)          the classic KD objective; mode-covering
  reverse_kl  KL(p_S ‖ p_T)          MiniLLM's; mode-seeking
  jsd         β·KL(p_T ‖ m) + (1−β)·KL(p_S ‖ m), m = β·p_T + (1−β)·p_S
              (GKD's generalized Jensen-Shannon divergence; TRL's convention, 0 < β < 1)
The teacher's logits are detached: gradients reach only the student.

`kd_loss_topk` is the same on a teacher cached as its top-k log-probs per token (the
`teacher_logits` stage): the teacher is renormalised over its k ids; forward KL scores the
student's full-vocabulary log-probs at those ids (mass it puts elsewhere is still penalised),
reverse KL and JSD renormalise the student over the same k ids (they need a distribution).

Example:
    >>> import torch
    >>> from pipeline.training.kd import kd_loss
    >>> s, t = torch.zeros(1, 2, 3), torch.zeros(1, 2, 3)
    >>> float(kd_loss(s, t, torch.ones(1, 2, dtype=torch.bool), "forward_kl"))
    0.0
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.errors import UserError

Loss = Literal["forward_kl", "reverse_kl", "jsd"]


@dataclass(frozen=True)
class ModeDecision:
    mode: Literal["sequence", "logits"]
    reason: str
    shared_vocab: int | None = None  # logit rows both models agree on (the rest is padding)


# Filler entries GGUF converters add to pad a vocabulary up to the logit rows ("[PAD151643]"):
# a GGUF tokenizer lists them, the same model's Hugging Face tokenizer does not.
_FILLER = re.compile(r"\[PAD\d+\]|<\|PAD_TOKEN\|>|<pad_\d+>")


def _real(vocab: dict[str, int], other: dict[str, int]) -> dict[str, int]:
    """vocab without padding fillers past the other map's last id (trimmed rows anyway)."""
    top = max(other.values(), default=-1)
    return {t: i for t, i in vocab.items() if not (i > top and _FILLER.fullmatch(t))}


def _differences(a: dict[str, int], b: dict[str, int]) -> int:
    return sum(1 for tok, i in a.items() if b.get(tok) != i) + sum(1 for tok in b if tok not in a)


def choose_mode(requested: str, student_tok: Any, teacher_tok: Any, student_rows: int,
                teacher_rows: int) -> ModeDecision:
    """`sequence`, `logits` or `auto` -> the mode to train with, and why.

    `*_rows` are the models' logit rows (their config.vocab_size, padding included)."""
    if requested == "sequence":
        return ModeDecision("sequence", "requested")
    s_raw, t_raw = student_tok.get_vocab(), teacher_tok.get_vocab()
    s_map, t_map = _real(s_raw, t_raw), _real(t_raw, s_raw)
    differ = _differences(s_map, t_map)
    if differ:
        reason = (f"the tokenizers differ: {differ:,} tokens are missing from one or map to "
                  f"other ids ({len(s_map):,} vs {len(t_map):,} tokens)")
        if requested == "logits":
            raise UserError(f"distill.mode = 'logits' needs one vocabulary: {reason}; "
                            "use mode = 'auto' or 'sequence'")
        return ModeDecision("sequence", reason)
    shared = max(s_map.values()) + 1
    if min(student_rows, teacher_rows) < shared:
        raise UserError(f"a model has fewer logit rows ({min(student_rows, teacher_rows):,}) "
                        f"than its tokenizer has ids ({shared:,}): check the model files")
    padded = "" if student_rows == teacher_rows == shared else (
        f"; logit rows {student_rows:,} (student) and {teacher_rows:,} (teacher) trimmed to "
        f"the {shared:,} shared ids")
    return ModeDecision("logits", f"identical token->id maps ({shared:,} ids){padded}", shared)


def trim(logits: Any, shared_vocab: int) -> Any:
    """Drop padded logit rows past the shared vocabulary (last dimension)."""
    return logits[..., :shared_vocab]


def _kl(log_p: Any, log_q: Any) -> Any:
    """KL(p ‖ q) over the last dimension, from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def _check(temperature: float) -> None:
    if temperature <= 0:
        raise ValueError("temperature must be > 0")


def kd_loss(student_logits: Any, teacher_logits: Any, mask: Any, loss: Loss = "forward_kl",
            temperature: float = 1.0, beta: float = 0.5) -> Any:
    """Mean divergence over the masked (response) positions; logits [batch, seq, vocab]."""
    import torch.nn.functional as F

    _check(temperature)
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    return _masked_mean(divergence(log_s, log_t, loss, beta), mask) * temperature**2


def kd_loss_topk(student_logits: Any, teacher_ids: Any, teacher_logprobs: Any,
                 loss: Loss = "forward_kl", temperature: float = 1.0, beta: float = 0.5) -> Any:
    """Mean divergence over positions [n, vocab] against a cached teacher top-k ([n, k] each)."""
    import torch
    import torch.nn.functional as F

    _check(temperature)
    log_t = F.log_softmax(teacher_logprobs.detach().float() / temperature, dim=-1)
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1).gather(
        -1, teacher_ids.long())
    if loss != "forward_kl":  # reverse KL / JSD need the student as a distribution on the k ids
        log_s = log_s - torch.logsumexp(log_s, dim=-1, keepdim=True)
    ones = torch.ones(log_s.shape[:-1], dtype=torch.bool, device=log_s.device)
    return _masked_mean(divergence(log_s, log_t, loss, beta), ones) * temperature**2


def _masked_mean(per_token: Any, mask: Any) -> Any:
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def divergence(log_s: Any, log_t: Any, loss: Loss, beta: float = 0.5) -> Any:
    """Per-position divergence between student and teacher log-probs (last dim)."""
    import torch

    if loss == "forward_kl":
        per_token = _kl(log_t, log_s)
    elif loss == "reverse_kl":
        per_token = _kl(log_s, log_t)
    elif loss == "jsd":
        if not 0 < beta < 1:
            raise ValueError("jsd needs 0 < beta < 1 (beta 0 / 1 are forward / reverse KL)")
        log_m = torch.logsumexp(torch.stack([log_t + math.log(beta),
                                             log_s + math.log(1 - beta)]), dim=0)
        per_token = beta * _kl(log_t, log_m) + (1 - beta) * _kl(log_s, log_m)
    else:
        raise ValueError(f"unknown KD loss {loss!r}")
    return per_token


def topk(logits: Any, k: int) -> tuple[Any, Any]:
    """The teacher's k most likely ids and their log-probs (full softmax), per position."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    values, ids = logp.topk(min(k, logp.shape[-1]), dim=-1)
    return ids.to(torch.int32), values
