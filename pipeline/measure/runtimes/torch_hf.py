"""Torch runtime adapter: an HF safetensors folder in fp32 with transformers, on accelerate's
device (the CPU here; CUDA when present).

This is the student as training left it (and the base as its package ships it), before any
export: the reference the exported and quantized artifacts are compared against. Greedy
decoding is a plain loop over the model with its KV cache — what `generate` does, without
its per-step processors — timed per token. No prefix cache between prompts (the HF way).

Example:
    python -c "from pipeline.measure.runtimes.torch_hf import TorchRuntime; \
        r = TorchRuntime('build/cache/distill/<key>', 1024, 2); \
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

PARALLEL = 8  # answers decoded together by chat_many


class TorchRuntime:
    def __init__(self, model: str, n_ctx: int, threads: int) -> None:
        import torch

        from pipeline.models.hf import load_for_inference, load_tokenizer

        torch.set_num_threads(threads)
        self.torch = torch
        self.tok = load_tokenizer(Path(model))
        self.model, self.device = load_for_inference(Path(model))
        self.n_vocab = int(self.model.config.vocab_size)
        eos = self.model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) | {self.tok.eos_token_id}

    def _step(self, ids: list[int], past: Any) -> tuple[int, Any]:
        """Run `ids` through the model after `past`; the greedy next token and the new cache."""
        out = self.model(input_ids=self.torch.tensor([ids], device=self.device), cache=past, use_cache=True,
                         logits_to_keep=1)  # only the last position's logits are needed
        return int(out.logits[0, -1].argmax()), out.cache

    def chat(self, messages: list[dict[str, str]], max_tokens: int) -> Generation:
        prompt = chat_prompt(self.tok, messages)

        def stream() -> Iterator[int]:
            token, past = self._step(prompt, None)
            while True:
                yield token
                token, past = self._step([token], past)

        start = time.perf_counter()
        with self.torch.inference_mode():
            return timed_generation(self.tok, prompt, stream(), self.eos, max_tokens, start)

    def chat_many(self, chats: list[list[dict[str, str]]], max_tokens: int) -> list[Generation]:
        """Greedy answers PARALLEL at a time: transformers' `generate` over left-padded
        prompts, one forward per step for the whole batch (answers only, no timings)."""
        torch, out = self.torch, []
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else min(self.eos)
        for first in range(0, len(chats), PARALLEL):
            prompts = [chat_prompt(self.tok, m) for m in chats[first:first + PARALLEL]]
            width = max(len(p) for p in prompts)
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts],
                                device=self.device)
            start = time.perf_counter()
            with torch.inference_mode():
                rows = self.model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                           max_new_tokens=max_tokens, pad_token_id=pad,
                                           eos_token_id=sorted(self.eos))[:, width:].tolist()
            # the same cut at EOS and decoding as `chat` (its timings mean nothing here)
            out += [timed_generation(self.tok, prompt, row, self.eos, max_tokens, start)
                    for prompt, row in zip(prompts, rows, strict=True)]
        return out

    def logprobs(self, tokens: list[int], start: int) -> np.ndarray:
        """Teacher-forced log-probs of tokens[start:] (rows predict the next token)."""
        with self.torch.inference_mode():
            logits = self.model(input_ids=self.torch.tensor([tokens], device=self.device)).logits[0]
        return log_softmax(logits[start - 1:len(tokens) - 1].float().cpu().numpy())

    def synthetic(self, pp: int, tg: int, repeats: int) -> dict[str, Any]:
        """Fixed-length prefill (`pp` tokens, no cache) and greedy decode (`tg` tokens) tests."""
        filler = (self.tok("The quick brown fox jumps over the lazy dog. ")["input_ids"] * pp)[:pp]

        def prefill() -> float:
            with self.torch.inference_mode():
                begin = time.perf_counter()
                self._step(filler, None)
                return pp / (time.perf_counter() - begin)

        def decode() -> float:
            with self.torch.inference_mode():
                token, past = self._step(filler[:1], None)
                begin = time.perf_counter()
                for _ in range(tg):
                    token, past = self._step([token], past)
                return tg / (time.perf_counter() - begin)

        out = run_interleaved({"pp_tok_s": prefill, "tg_harness_tok_s": decode}, repeats)
        return {"pp": pp, "tg": tg, "repeats": repeats, **out}
