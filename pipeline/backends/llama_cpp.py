"""Teacher backend on a local GGUF through llama-cpp-python.

Requests run one at a time in order, so consecutive requests share their system/few-shot
prefix and llama.cpp reuses its KV cache for it (only the new suffix is prefilled).

Example:
    python -c "from pipeline.backends.llama_cpp import LlamaCppBackend; \
        b = LlamaCppBackend('m.gguf', {'n_ctx': 2048, 'threads': 2, 'seed': 0})"
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pipeline.backends import Request, Result


class LlamaCppBackend:
    def __init__(self, model_path: Any, settings: dict[str, Any]) -> None:
        from pipeline.llm import ChatRunner, open_gguf

        self.runner = ChatRunner(open_gguf(model_path, settings["n_ctx"], settings["threads"],
                                           settings["seed"]))

    def run(self, requests: Iterable[Request]) -> Iterator[Result]:
        for req in requests:
            gen = self.runner.chat_messages(list(req.messages), req.max_tokens,
                                            temperature=req.temperature, seed=req.seed)
            yield Result(request=req, text=gen.text, prompt_tokens=gen.prompt_tokens,
                         prefill_tokens=gen.prefill_tokens, completion_tokens=gen.completion_tokens)

    def close(self) -> None:
        del self.runner
