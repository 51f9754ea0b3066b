"""Continuous batching on one GGUF: several chats decoded together, the shared prefix computed once.

The teacher spends most of its time on two things a one-prompt-at-a-time loop repeats: the
few-shot prefix (identical on every row) and the decode steps, which on a CPU are bound by
reading the weights once per step whatever the batch size. Here the prefix is prefilled
once into a holder sequence and shared by every slot (llama.cpp's unified KV cache: a
`seq_cp` only tags cells, it copies nothing); each step then decodes one token for every
busy slot in a single `llama_decode`, and a slot that finishes takes the next prompt at once
(its suffix is prefilled inside the same step as the others' decode tokens). A chat may
decode under a grammar (pipeline.constrain; llguidance): its slot masks the tokens the
grammar does not allow next, as the one-at-a-time runner does.

Example (needs a GGUF; the teacher the build downloads will do):
    python -c "from pipeline.generation.llm import open_gguf, ChatRunner; \
        from pipeline.generation.llm_batch import BatchedChat; \
        r = ChatRunner(open_gguf('build/cache/models/qwen.gguf', 2048, 2)); \
        b = BatchedChat(r, parallel=4, threads=2); \
        print([g.text for _, g in b.generate([[{'role': 'user', 'content': 'Hi'}]] * 4, 16)])"
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.errors import UserError
from pipeline.generation.llm import ChatRunner, Generation
from pipeline.runkit.grammar import last_user


@dataclass
class _Slot:
    """One sequence in the batch: the request it serves and what it has produced so far."""

    index: int = -1  # position of the request in the caller's list; -1 = idle
    pending: list[int] = field(default_factory=list)  # suffix tokens not yet decoded
    pos: int = 0  # next KV position of this sequence
    out: list[int] = field(default_factory=list)
    start: float = 0.0
    first: float = 0.0
    last: float = 0.0
    batch_row: int = -1  # row of this slot's logits in the last decoded batch
    prefill: int = 0
    mask: Any = None  # runkit.grammar.GrammarMask of a chat decoded under a grammar


def common_prefix(token_lists: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix every list shares, keeping ≥ 1 own token in each."""
    if not token_lists:
        return 0
    first, n = token_lists[0], min(len(t) for t in token_lists) - 1
    for toks in token_lists[1:]:
        n = next((i for i in range(n) if toks[i] != first[i]), n)
    return max(n, 0)


class BatchedChat:
    """Greedy (or seeded sampling) chat completion of many prompts, `parallel` at a time."""

    def __init__(self, runner: ChatRunner, parallel: int, threads: int) -> None:
        self.runner, self.parallel, self.threads = runner, parallel, threads
        self.llm = runner.llm
        self._prefix_charge = 0

    def _context(self, n_ctx: int, slots: int) -> Any:
        import llama_cpp
        from llama_cpp._internals import LlamaContext

        # The Llama's own settings (flash attention, KV types, rope...) so answers match its own.
        params = llama_cpp.llama_context_params.from_buffer_copy(self.llm.context_params)
        params.n_ctx, params.n_batch, params.n_ubatch = n_ctx, n_ctx, min(n_ctx, 512)
        params.n_seq_max = slots + 1  # +1: the sequence that holds the shared prefix
        params.kv_unified = True  # slots share the prefix's KV cells instead of copying them
        params.n_threads = params.n_threads_batch = self.threads
        return LlamaContext(model=self.llm._model, params=params, verbose=False)

    def generate(self, chats: Sequence[Sequence[dict[str, str]]], max_tokens: int,
                 temperature: float = 0.0, seeds: Sequence[int] | None = None,
                 grammars: Sequence[str | None] | None = None,
                 ) -> Iterator[tuple[int, Generation]]:
        """Yield (index into `chats`, Generation) as each finishes — not in input order.
        `grammars`: per chat, the grammar its answer decodes under (None: free)."""
        import llama_cpp

        prompts = [self.runner.prompt_tokens(list(m)) for m in chats]

        def mask_for(index: int) -> Any:  # a fresh grammar mask per answer (None: free)
            grammar = grammars[index] if grammars else None
            return self.runner.grammar_mask(grammar, last_user(list(chats[index])))
        if not prompts:
            return
        longest = max(len(p) for p in prompts)
        if longest + max_tokens > self.llm.n_ctx():
            raise UserError(f"prompt of {longest} tokens + {max_tokens} new tokens exceeds the "
                            f"context of {self.llm.n_ctx()}: raise n_ctx or shorten prompts")
        shared = common_prefix(prompts)
        # No more slots than prompts, or than llama.cpp's sequence limit allows.
        slots = max(1, min(self.parallel, len(prompts),
                           llama_cpp.llama_max_parallel_sequences() - 1))
        # Cells: the prefix once, then each slot's own suffix and answer.
        n_ctx = shared + slots * (longest - shared + max_tokens) + 16
        ctx = self._context(n_ctx, slots)
        batch = llama_cpp.llama_batch_init(n_ctx, 0, slots + 1)
        try:
            holder = slots  # the sequence id after the slots' own
            self._prefill_prefix(ctx, batch, prompts[0][:shared], holder)
            yield from self._loop(ctx, batch, prompts, shared, holder, max_tokens,
                                  temperature, seeds or [0] * len(prompts), mask_for)
        finally:
            llama_cpp.llama_batch_free(batch)
            ctx.close()

    def _decode(self, ctx: Any, batch: Any) -> None:
        import llama_cpp

        status = llama_cpp.llama_decode(ctx.ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")

    def _prefill_prefix(self, ctx: Any, batch: Any, tokens: list[int], seq: int) -> None:
        """Evaluate the shared prefix into `seq`, in chunks of the micro-batch size."""
        step = 512
        for start in range(0, len(tokens), step):
            chunk = tokens[start:start + step]
            batch.n_tokens = 0
            for i, tok in enumerate(chunk):
                add_token(batch, tok, start + i, seq, logits=False)
            self._decode(ctx, batch)
        self._prefix_charge = len(tokens)

    def _loop(self, ctx: Any, batch: Any, prompts: list[list[int]], shared: int, holder: int,
              max_tokens: int, temperature: float, seeds: Sequence[int],
              mask_for: Callable[[int], Any]) -> Iterator[tuple[int, Generation]]:
        import llama_cpp

        vocab, n_vocab = self.llm._model.vocab, self.llm.n_vocab()
        slots = [_Slot() for _ in range(holder)]  # sequences 0..holder-1; holder has the prefix
        queue = list(range(len(prompts)))[::-1]
        rngs: dict[int, np.random.Generator] = {}
        while queue or any(s.index >= 0 for s in slots):
            batch.n_tokens = 0
            for seq, slot in enumerate(slots):
                if slot.index < 0 and queue:
                    self._assign(ctx, slot, seq, queue.pop(), prompts, shared, holder)
                    rngs[seq] = np.random.default_rng(seeds[slot.index])
                    slot.mask = mask_for(slot.index)
                if slot.index >= 0:
                    feed = slot.pending or slot.out[-1:]
                    for tok in feed:
                        add_token(batch, tok, slot.pos, seq, logits=False)
                        slot.pos += 1
                    batch.logits[batch.n_tokens - 1] = True
                    slot.batch_row, slot.pending = batch.n_tokens - 1, []
            self._decode(ctx, batch)
            now = time.perf_counter()
            for seq, slot in enumerate(slots):
                if slot.index < 0:
                    continue
                ptr = llama_cpp.llama_get_logits_ith(ctx.ctx, slot.batch_row)
                logits = np.ctypeslib.as_array(ptr, shape=(n_vocab,))
                if slot.mask is not None:  # the tokens so far, then the mask on a copy
                    logits = slot.mask(prompts[slot.index] + slot.out, logits.copy())
                token = _pick(logits, temperature, rngs[seq])
                eog = llama_cpp.llama_vocab_is_eog(vocab, token)
                if not eog:
                    slot.out.append(token)
                    slot.first = slot.first or now
                    slot.last = now
                if eog or len(slot.out) >= max_tokens:
                    yield slot.index, self._finish(slot, prompts[slot.index], now)
                    slot.index = -1

    def _assign(self, ctx: Any, slot: _Slot, seq: int, index: int, prompts: list[list[int]],
                shared: int, holder: int) -> None:
        """Point an idle slot at a new prompt: share the prefix cells, queue its own suffix."""
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(ctx.memory, seq, -1, -1)
        llama_cpp.llama_memory_seq_cp(ctx.memory, holder, seq, -1, -1)
        # The prefix's prefill is counted once, on the first row that uses it.
        charge, self._prefix_charge = self._prefix_charge, 0
        slot.index, slot.pending, slot.pos, slot.out = index, prompts[index][shared:], shared, []
        slot.prefill = len(slot.pending) + charge
        slot.start, slot.first, slot.last = time.perf_counter(), 0.0, 0.0

    def _finish(self, slot: _Slot, prompt: list[int], now: float) -> Generation:
        text = self.llm.detokenize(slot.out).decode("utf-8", errors="replace")
        first = slot.first or now
        return Generation(text=text.strip(), prompt_tokens=len(prompt),
                          prefill_tokens=slot.prefill, completion_tokens=len(slot.out),
                          ttft_s=first - slot.start, decode_s=(slot.last or first) - first,
                          total_s=now - slot.start)


def add_token(batch: Any, token: int, pos: int, seq: int, logits: bool) -> None:
    """Append one token of sequence `seq` at position `pos` to a raw llama_batch."""
    i = batch.n_tokens
    batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
    batch.seq_id[i][0], batch.logits[i] = seq, logits
    batch.n_tokens = i + 1


def _pick(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """Greedy at temperature 0; else top-k 40 / top-p 0.95 sampling (the ChatRunner's settings)."""
    if temperature <= 0:
        return int(np.argmax(logits))
    top = np.argpartition(logits, -40)[-40:]
    top = top[np.argsort(logits[top])[::-1]]
    probs = np.exp((logits[top] - logits[top[0]]) / temperature)
    probs /= probs.sum()
    keep = int(np.searchsorted(np.cumsum(probs), 0.95)) + 1
    probs = probs[:keep] / probs[:keep].sum()
    return int(top[rng.choice(keep, p=probs)])
