"""Plain onnxruntime adapter: a decoder exported with its KV cache as graph inputs/outputs
(optimum-onnx's `text-generation-with-past`: model.onnx with input_ids, attention_mask,
position_ids, past_key_values.N.key/value -> logits, present.N.key/value), no genai_config.

Not a shipping format here; it exists so `benchmarks.onnx_paths` can measure optimum's
export with the same harness as the onnxruntime-genai builder's (same prompts, metric, KL).
The loop is what optimum's ORTModelForCausalLM does per token, minus `generate()`'s overhead.

Example:
    python -c "from pipeline.measure.runtimes.onnx_plain import OrtRuntime; \
        r = OrtRuntime('/tmp/onnx-paths/optimum-int4', 1024, 2); \
        print(r.chat([{'role': 'user', 'content': 'Ann Lee wants 2 lamps'}], 32).text)"
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.generation.llm import Generation
from pipeline.measure.runtimes import chat_prompt, log_softmax, run_interleaved, timed_generation


class OrtRuntime:
    def __init__(self, model: str, n_ctx: int, threads: int) -> None:
        import onnxruntime as ort

        from pipeline.models.hf import load_tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(Path(model) / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.past = [(i.name, i.shape) for i in self.session.get_inputs()
                     if i.name.startswith("past_key_values")]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.n_vocab = int(self.session.get_outputs()[0].shape[-1])
        self.tok = load_tokenizer(Path(model))
        eos = self.tok.eos_token_id
        self.eos = {eos} if isinstance(eos, int) else set(eos or [])

    def _step(self, ids: list[int], cache: dict[str, Any] | None, pos: int
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """One forward pass of `ids` after `pos` cached positions: (logits rows, new cache)."""
        feed: dict[str, Any] = {
            "input_ids": np.asarray([ids], dtype=np.int64),
            "attention_mask": np.ones((1, pos + len(ids)), dtype=np.int64),
            "position_ids": np.arange(pos, pos + len(ids), dtype=np.int64)[None]}
        if cache is None:  # empty past: [batch, kv heads, 0, head dim]
            cache = {name: np.zeros((1, shape[1], 0, shape[3]), dtype=np.float32)
                     for name, shape in self.past}
        outs = self.session.run(None, {**feed, **cache})
        new = {name.replace("present", "past_key_values"): value
               for name, value in zip(self.outputs[1:], outs[1:], strict=True)}
        return outs[0][0], new

    def _stream(self, prompt: list[int]) -> Iterator[int]:
        logits, cache = self._step(prompt, None, 0)
        pos = len(prompt)
        while True:
            token = int(np.argmax(logits[-1]))
            yield token
            logits, cache = self._step([token], cache, pos)
            pos += 1

    def chat(self, messages: list[dict[str, str]], max_tokens: int) -> Generation:
        prompt = chat_prompt(self.tok, messages)
        start = time.perf_counter()
        return timed_generation(self.tok, prompt, self._stream(prompt), self.eos, max_tokens, start)

    def logprobs(self, tokens: list[int], start: int) -> np.ndarray:
        logits, _ = self._step(tokens, None, 0)
        return log_softmax(logits[start - 1:len(tokens) - 1].astype(np.float32))

    def synthetic(self, pp: int, tg: int, repeats: int) -> dict[str, Any]:
        """Fixed-length prefill (`pp` tokens) and greedy decode (`tg` tokens, EOS ignored)."""
        filler = (self.tok("The quick brown fox jumps over the lazy dog. ")["input_ids"] * pp)[:pp]

        def prefill() -> float:
            begin = time.perf_counter()
            self._step(filler, None, 0)
            return pp / (time.perf_counter() - begin)

        def decode() -> float:
            stream = self._stream(filler[:1])
            next(stream)
            begin = time.perf_counter()
            for _ in range(tg):
                next(stream)
            return tg / (time.perf_counter() - begin)

        out = run_interleaved({"pp_tok_s": prefill, "tg_harness_tok_s": decode}, repeats)
        return {"pp": pp, "tg": tg, "repeats": repeats, **out}
