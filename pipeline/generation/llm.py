"""Greedy chat generation on a GGUF with llama-cpp-python, timed token by token.

Shared by the teacher stage and the benchmark harness, so both apply the GGUF's own
chat template the same way. `Llama.generate` keeps the KV cache of the longest common
prefix with the previous call, so a fixed system prompt is prefilled once, not per row.

Example (needs a GGUF; the student the build writes will do):
    python -c "from pipeline.generation.llm import open_gguf, ChatRunner; \
        r = ChatRunner(open_gguf('build/cpu-int4/student.Q4_0.gguf', 1024, 2)); \
        print(r.chat('You extract orders.', 'Ann Lee wants 2 lamps in Oslo on 2025-03-04'))"
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import UserError
from pipeline.runkit.grammar import last_user


def open_gguf(path: Path | str, n_ctx: int, threads: int, seed: int = 0) -> Any:
    """Load a GGUF with llama.cpp; an unreadable file is a one-line UserError."""
    # OMP_WAIT_POLICY is left to the user: on a quiet machine the default (spinning) decoded
    # SmolLM2 at 125 tok/s vs 42 with PASSIVE; PASSIVE only pays when the cores are shared.
    from llama_cpp import Llama

    try:
        return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads,
                     n_threads_batch=threads, seed=seed, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"cannot load GGUF model {path}: {exc}") from None


@dataclass(frozen=True)
class Generation:
    """One completion with its token counts and timings (seconds)."""

    text: str
    prompt_tokens: int
    prefill_tokens: int  # prompt tokens actually evaluated (the rest came from the KV cache)
    completion_tokens: int
    ttft_s: float
    decode_s: float  # first token -> last token
    total_s: float


class ChatRunner:
    """Formats messages with the GGUF's chat template and generates greedily."""

    def __init__(self, llm: Any) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llm = llm
        self._lltokenizer: Any = None  # llguidance's vocabulary view, built on first use
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise UserError("GGUF model has no chat template (tokenizer.chat_template): "
                            "use an instruct model converted with its template")
        eos, bos = llm.token_eos(), llm.token_bos()
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
        )

    def grammar_mask(self, grammar: str | None, message: str) -> Any:
        """A `runkit.grammar.GrammarMask` for one answer to `message` (None: no grammar)."""
        if grammar is None:
            return None
        from pipeline.runkit.grammar import GrammarMask, llama_vocab

        if self._lltokenizer is None:
            self._lltokenizer = llama_vocab(self.llm)
        return GrammarMask(self._lltokenizer, grammar, message)

    def _mask(self, grammar: str | None, message: str) -> Any:
        mask = self.grammar_mask(grammar, message)
        if mask is None:
            return None
        from llama_cpp import LogitsProcessorList

        return LogitsProcessorList([mask])

    def prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        text = self._formatter(messages=messages).prompt
        # The template already wrote any BOS it wants (Jinja2ChatFormatter: added_special).
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def chat(self, system: str, user: str, max_tokens: int = 96) -> Generation:
        """Greedy completion of one system+user exchange, timed."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return self.chat_messages(messages, max_tokens)

    def chat_messages(self, messages: list[dict[str, str]], max_tokens: int = 96,
                      temperature: float = 0.0, seed: int = 0,
                      grammar: str | None = None) -> Generation:
        """Complete a chat (greedy at temperature 0, else seeded sampling), timed per token;
        `grammar` (pipeline.constrain) masks every token it does not allow; its copy fields
        are spans of the last user turn."""
        import llama_cpp

        tokens = self.prompt_tokens(messages)
        if len(tokens) + max_tokens > self.llm.n_ctx():
            raise UserError(f"prompt of {len(tokens)} tokens + {max_tokens} new tokens exceeds "
                            f"the context of {self.llm.n_ctx()}: raise n_ctx or shorten prompts")
        cached = self.llm.longest_token_prefix(self.llm._input_ids.tolist(), tokens)
        if temperature > 0:
            self.llm.set_seed(seed)
        sampling = ({"top_k": 1, "temp": 0.0} if temperature == 0 else
                    {"top_k": 40, "top_p": 0.95, "temp": temperature})
        vocab = self.llm._model.vocab
        out: list[int] = []
        start = time.perf_counter()
        first = last = start
        for token in self.llm.generate(tokens, repeat_penalty=1.0, **sampling,
                                       logits_processor=self._mask(grammar, last_user(messages))):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            last = time.perf_counter()
            if not out:
                first = last
            out.append(token)
            if len(out) >= max_tokens:
                break
        text = self.llm.detokenize(out).decode("utf-8", errors="replace")
        # generate() evaluates the whole prompt when nothing is cached (the last prompt
        # token is always re-evaluated to get fresh logits).
        prefill = len(tokens) - min(cached, len(tokens) - 1)
        return Generation(text=text.strip(), prompt_tokens=len(tokens), prefill_tokens=prefill,
                          completion_tokens=len(out), ttft_s=first - start, decode_s=last - first,
                          total_s=time.perf_counter() - start)

