"""GGUF runtime adapter: llama-cpp-python, the way the shipped artifact is served.

Generation goes through `pipeline.generation.llm.ChatRunner` (the GGUF's own chat template, greedy,
KV cache of the shared system prompt kept between prompts, as a server would).

Example:
    python -c "from pipeline.measure.runtimes.gguf import GgufRuntime; \
        r = GgufRuntime('build/cpu-int4/model.Q4_K_M.gguf', 1024, 2); \
        print(r.chat([{'role': 'user', 'content': 'Ann Lee wants 2 lamps'}], 32).text)"
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from pipeline.generation.llm import ChatRunner, Generation, open_gguf
from pipeline.measure.runtimes import log_softmax, run_interleaved

# untimed answers decoded together by `chat_many` (continuous batching, llm_batch)
PARALLEL = 16


class GgufRuntime:
    """`chat_many` is inexact: llama.cpp's batched decoding changed 6 of 95 greedy answers of
    the default build's Q4_K_M student (its other numerical path), while the bundle answers
    one at a time — so the bench uses it only for rows that are not shipped (`batches_exactly`
    False: a row must opt in), and every shipped GGUF answer is produced the way the bundle
    produces it."""

    batches_exactly = False

    def __init__(self, model: str, n_ctx: int, threads: int) -> None:
        self.threads = threads
        self.runner = ChatRunner(open_gguf(model, n_ctx, threads))
        self.llm = self.runner.llm
        self.n_vocab = int(self.llm.n_vocab())
        self.grammar: str | None = None

    def constrain(self, grammar: str) -> None:
        """Answer under this grammar from now on (pipeline.constrain)."""
        self.grammar = grammar

    def chat(self, messages: list[dict[str, str]], max_tokens: int) -> Generation:
        return self.runner.chat_messages(messages, max_tokens, grammar=self.grammar)

    def chat_many(self, chats: list[list[dict[str, str]]], max_tokens: int) -> list[Generation]:
        """Greedy answers PARALLEL at a time, the shared prefix computed once (answers only:
        their timings are a batch's, not one user's)."""
        from pipeline.generation.llm_batch import BatchedChat

        done = dict(BatchedChat(self.runner, PARALLEL, self.threads).generate(chats, max_tokens))
        return [done[i] for i in range(len(chats))]

    def logprobs(self, tokens: list[int], start: int) -> np.ndarray:
        """Teacher-forced log-probs of tokens[start:], from one batch over the whole text."""
        import llama_cpp

        from pipeline.generation.llm_batch import add_token

        if len(tokens) > self.llm.n_batch:
            raise ValueError(f"scoring text of {len(tokens)} tokens > n_batch {self.llm.n_batch}")
        ctx = self.llm._ctx.ctx
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        self.llm.reset()  # the Llama's own prefix bookkeeping must forget the cache too
        batch = llama_cpp.llama_batch_init(len(tokens), 0, 1)
        try:
            for pos, tok in enumerate(tokens):
                add_token(batch, tok, pos, 0, logits=pos >= start - 1)
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed while scoring")
            rows = [np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, i),
                                          shape=(self.n_vocab,)).copy()
                    for i in range(start - 1, len(tokens) - 1)]
        finally:
            llama_cpp.llama_batch_free(batch)
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        return log_softmax(np.stack(rows))

    def synthetic(self, pp: int, tg: int, repeats: int) -> dict[str, Any]:
        """llama-bench-style fixed-length tests, after one warm-up of each, `repeats` times each.

        pp: prefill `pp` tokens from an empty cache. tg: greedy-generate `tg` tokens after a
        1-token prompt, two ways on the same file: a bare llama-cpp-python loop (eval one token,
        argmax of the logits in numpy) and the harness's own path (`Llama.generate`, as
        ChatRunner uses it), so the harness's overhead is measured, not assumed.
        """
        llm, n_vocab = self.llm, self.n_vocab
        prompt = [llm.token_bos() if llm.token_bos() >= 0 else 0]
        filler = (llm.tokenize(b"The quick brown fox jumps over the lazy dog. ",
                               add_bos=False) * pp)[:pp]

        def prefill() -> float:
            llm.reset()
            start = time.perf_counter()
            llm.eval(filler)
            return pp / (time.perf_counter() - start)

        def bare() -> float:
            llm.reset()
            llm.eval(prompt)
            start = time.perf_counter()
            for _ in range(tg):
                logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
                llm.eval([int(np.argmax(logits))])
            return tg / (time.perf_counter() - start)

        def harness() -> float:
            llm.reset()
            start = time.perf_counter()
            for n, _token in enumerate(llm.generate(prompt, top_k=1, temp=0.0, reset=True), 1):
                if n == 1:
                    start = time.perf_counter()  # like bare(): time decoding, not the prompt
                if n > tg:
                    break
            return tg / (time.perf_counter() - start)

        out = run_interleaved({"pp_tok_s": prefill, "tg_bare_tok_s": bare,
                               "tg_harness_tok_s": harness}, repeats)
        bare_median = out["tg_bare_tok_s"]["median"]
        out["harness_overhead_pct"] = round(
            100 * (1 - out["tg_harness_tok_s"]["median"] / bare_median), 2)
        return {"pp": pp, "tg": tg, "repeats": repeats, **out}

