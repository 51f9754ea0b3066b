"""ONNX runtime adapter: an onnxruntime-genai model folder (model.onnx + genai_config.json).

The folder is what `python -m onnxruntime_genai.models.builder` writes (and what an ONNX
target ships). Prompts are formatted with the folder's own HF tokenizer files (the same chat
template the student was trained with); generation is onnxruntime-genai's greedy loop, its KV
cache managed by the library, threads set through the session options.

Example:
    python -c "from pipeline.measure.runtimes.onnx_genai import OnnxGenaiRuntime; \
        r = OnnxGenaiRuntime('build/onnx-int4', 1024, 2); \
        print(r.chat([{'role': 'user', 'content': 'Ann Lee wants 2 lamps'}], 32).text)"
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.generation.llm import Generation
from pipeline.measure.runtimes import chat_prompt, log_softmax, run_interleaved, timed_generation


class OnnxGenaiRuntime:
    def __init__(self, model: str, n_ctx: int, threads: int) -> None:
        import onnxruntime_genai as og

        from pipeline.models.hf import load_tokenizer
        from pipeline.runkit.run import open_onnx

        self.og, self.folder = og, Path(model)
        self.model = open_onnx(self.folder, threads)  # a CUDA export runs on CPU without a GPU
        self.tok = load_tokenizer(self.folder)
        genai = json.loads((self.folder / "genai_config.json").read_text())
        self.n_vocab = int(genai["model"]["vocab_size"])
        self.context = int(genai["model"]["context_length"])
        eos = self.tok.eos_token_id
        self.eos = {eos} if isinstance(eos, int) else set(eos or [])
        self.grammar: str | None = None
        self.vocab: Any = None  # llguidance's view of the tokenizer, under a grammar

    def constrain(self, grammar: str) -> None:
        """Answer under this grammar from now on (pipeline.constrain), masked per token as
        the bundle's run.py does (runkit.run.onnx_next)."""
        from pipeline.runkit.grammar import hf_vocab

        self.grammar = grammar
        self.vocab = hf_vocab(self.folder / "tokenizer.json", self.n_vocab, sorted(self.eos))

    def _generator(self, max_length: int, min_length: int = 0) -> Any:
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=min(max_length, self.context), do_sample=False,
                                  min_length=min_length)
        return self.og.Generator(self.model, params)

    def chat(self, messages: list[dict[str, str]], max_tokens: int) -> Generation:
        from pipeline.runkit.grammar import GrammarMask, last_user
        from pipeline.runkit.run import onnx_next

        prompt = chat_prompt(self.tok, messages)
        start = time.perf_counter()
        mask = (GrammarMask(self.vocab, self.grammar, last_user(messages))
                if self.grammar is not None else None)
        gen = self._generator(len(prompt) + max_tokens)
        gen.append_tokens(np.asarray([prompt], dtype=np.int32))

        def stream() -> Iterator[int]:
            seq = list(prompt)
            while not gen.is_done():
                yield onnx_next(gen, mask, seq)

        return timed_generation(self.tok, prompt, stream(), self.eos, max_tokens, start)

    def logprobs(self, tokens: list[int], start: int) -> np.ndarray:
        """Teacher-forced log-probs of tokens[start:], from the prompt step's logits."""
        gen = self._generator(len(tokens) + 1)
        gen.append_tokens(np.asarray([tokens], dtype=np.int32))
        logits = np.asarray(gen.get_output("logits"), dtype=np.float32)[0]
        if logits.shape[0] != len(tokens):
            raise ValueError(f"model returns logits for {logits.shape[0]} of {len(tokens)} "
                             "positions: export it with all positions' logits")
        return log_softmax(logits[start - 1:len(tokens) - 1])

    def synthetic(self, pp: int, tg: int, repeats: int) -> dict[str, Any]:
        """Fixed-length prefill (`pp` tokens) and greedy decode (`tg` tokens, EOS ignored)."""
        filler = (self.tok("The quick brown fox jumps over the lazy dog. ")["input_ids"] * pp)[:pp]

        def prefill() -> float:
            gen = self._generator(pp + 1)
            begin = time.perf_counter()
            gen.append_tokens(np.asarray([filler], dtype=np.int32))
            return pp / (time.perf_counter() - begin)

        def decode() -> float:
            gen = self._generator(tg + 2, min_length=tg + 2)
            gen.append_tokens(np.asarray([filler[:1]], dtype=np.int32))
            gen.generate_next_token()
            begin = time.perf_counter()
            for _ in range(tg):
                gen.generate_next_token()
            return tg / (time.perf_counter() - begin)

        out = run_interleaved({"pp_tok_s": prefill, "tg_harness_tok_s": decode}, repeats)
        return {"pp": pp, "tg": tg, "repeats": repeats, **out}
