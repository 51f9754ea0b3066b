"""Teacher backend on a local GGUF through llama-cpp-python.

Every request shares the system/few-shot prefix, so it is prefilled once. With
`concurrency` > 1 (the default: 32) the requests are decoded together by continuous batching
(`pipeline.generation.llm_batch`): on this 2-core CPU a step of 32 tokens ran at 64 tok/s vs 22 for one
token, because wide batches take llama.cpp's matrix-multiply path. With 1, requests run one at
a time (llama.cpp's own prefix match then reuses the prefix's KV cache).

A batched answer depends on which requests share its batch (a wider matmul rounds
differently), so the backend runs in waves of `WAVE_SLOTS` × concurrency requests, each from a
fresh context: the teacher stage resumes a killed run wave by wave, and the resumed answers
are the uninterrupted run's.

Example:
    python -c "from pipeline.generation.backends import BackendOptions; \
        from pipeline.generation.backends.llama_cpp import LlamaCppBackend; \
        b = LlamaCppBackend('m.gguf', BackendOptions(n_ctx=2048, threads=2, concurrency=8))"
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import groupby
from typing import Any

from pipeline.generation.backends import BackendOptions, Request, Result
from pipeline.generation.llm import Generation

# Requests per wave, in batch widths: each wave ends by draining its batch (about one answer's
# decode steps at falling width) and a kill loses at most the unfinished wave's answers.
WAVE_SLOTS = 8


def _result(req: Request, gen: Generation) -> Result:
    return Result(request=req, text=gen.text, prompt_tokens=gen.prompt_tokens,
                  prefill_tokens=gen.prefill_tokens, completion_tokens=gen.completion_tokens)


class LlamaCppBackend:
    def __init__(self, model_path: Any, settings: BackendOptions) -> None:
        from pipeline.generation.llm import ChatRunner, open_gguf

        self.threads, self.parallel = settings.threads, settings.concurrency
        # one at a time: llama.cpp's own prefix cache is reused across requests, so a resumed
        # run's first answer may round differently (not exact; batching is the default)
        self.wave = WAVE_SLOTS * self.parallel if self.parallel > 1 else None
        self.runner = ChatRunner(open_gguf(model_path, settings.n_ctx, settings.threads,
                                           settings.seed))

    def run(self, requests: Iterable[Request]) -> Iterator[Result]:
        if self.parallel <= 1:
            for req in requests:
                yield _result(req, self.runner.chat_messages(
                    list(req.messages), req.max_tokens, temperature=req.temperature, seed=req.seed,
                    grammar=req.grammar))
            return
        from pipeline.generation.llm_batch import BatchedChat

        batched = BatchedChat(self.runner, self.parallel, self.threads)
        # One batch per run of requests with the same generation settings (in practice: all).
        for (max_tokens, temperature), group in groupby(
                requests, key=lambda r: (r.max_tokens, r.temperature)):
            reqs = list(group)
            for i, gen in batched.generate([r.messages for r in reqs], max_tokens, temperature,
                                           seeds=[r.seed for r in reqs],
                                           grammars=[r.grammar for r in reqs]):
                yield _result(reqs[i], gen)

    def close(self) -> None:
        del self.runner
