"""Runtime adapters, one per artifact format, each used inside a fresh benchmark process:
llama.cpp for GGUF, onnxruntime-genai for ONNX, openvino-genai for OpenVINO, torch for HF
safetensors folders.

Every adapter loads one artifact and offers the same four things, so the harness
(`pipeline.measure.child`) times every format the same way:
- `chat(messages, max_tokens) -> Generation`: greedy, timed per token;
- `synthetic(pp, tg, repeats) -> dict`: llama-bench-style fixed-length prefill/decode tests;
- `logprobs(tokens, start) -> ndarray`: log-softmax rows predicting tokens[start:];
- `n_vocab`;
and may offer `constrain(grammar)`: answer under a task grammar from then on
(pipeline.constrain; llama.cpp), and `chat_many(chats, max_tokens) -> list[Generation]`:
the same greedy answers, decoded several at a time (answers only: their timings are not a
single user's latency) — only where that was measured to give the same answers as one at a time (torch).

Example:
    >>> from pipeline.measure.runtimes import runtime_for
    >>> runtime_for("student.Q4_K_M.gguf"), runtime_for("distill-out/")
    ('llama_cpp', 'torch')
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.generation.llm import Generation


class Runtime(Protocol):
    n_vocab: int

    def chat(self, messages: list[dict[str, str]], max_tokens: int) -> Generation: ...

    def synthetic(self, pp: int, tg: int, repeats: int) -> dict[str, Any]: ...

    def logprobs(self, tokens: list[int], start: int) -> np.ndarray: ...


def runtime_for(model: str | Path) -> str:
    """Which adapter runs an artifact: a GGUF file -> llama.cpp, an onnxruntime-genai folder
    (genai_config.json) -> onnxruntime, an OpenVINO IR folder -> openvino, a bare model.onnx
    folder -> plain onnxruntime, any other (HF) folder -> torch."""
    if str(model).endswith(".gguf"):
        return "llama_cpp"
    if (Path(model) / "genai_config.json").is_file():
        return "onnxruntime"
    if (Path(model) / "openvino_model.xml").is_file():
        return "openvino"
    return "onnxruntime_plain" if (Path(model) / "model.onnx").is_file() else "torch"


# The adapters, written once: name -> "module:Class", imported lazily (each pulls in a heavy
# library). Every class takes (model, n_ctx, threads). A format names its adapter in
# pipeline.formats; a new format adds its line here.
RUNTIMES: dict[str, str] = {
    "llama_cpp": "pipeline.measure.runtimes.gguf:GgufRuntime",
    "onnxruntime": "pipeline.measure.runtimes.onnx_genai:OnnxGenaiRuntime",
    "openvino": "pipeline.measure.runtimes.openvino_genai:OpenVinoGenaiRuntime",
    # optimum-style KV-cache export (benchmarks.onnx_paths)
    "onnxruntime_plain": "pipeline.measure.runtimes.onnx_plain:OrtRuntime",
    "torch": "pipeline.measure.runtimes.torch_hf:TorchRuntime",
}


def open_runtime(name: str, model: str, n_ctx: int, threads: int) -> Runtime:
    """Load `model` in the named adapter."""
    import importlib

    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}: known are {', '.join(RUNTIMES)}")
    module, _, cls = RUNTIMES[name].partition(":")
    adapter: Runtime = getattr(importlib.import_module(module), cls)(model, n_ctx, threads)
    return adapter


def stats(values: list[float]) -> dict[str, float]:
    """Median and p90 of repeated measurements."""
    import statistics

    ordered = sorted(values)
    return {"median": statistics.median(ordered),
            "p90": ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]}


def run_interleaved(tests: dict[str, Any], repeats: int) -> dict[str, Any]:
    """One warm-up of each test, then `repeats` rounds interleaved (so drift in machine
    load hits all tests alike); median and p90 of each."""
    for fn in tests.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in tests}
    for _ in range(repeats):
        for name, fn in tests.items():
            samples[name].append(fn())
    return {name: stats(values) for name, values in samples.items()}


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float32 (numerically stable)."""
    logits = logits.astype(np.float32, copy=False)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def chat_prompt(tok: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a chat with the HF tokenizer's template, ready to answer."""
    return [int(i) for i in tok.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]]


def timed_generation(tok: Any, prompt: list[int], tokens: Iterable[int], eos: set[int],
                     max_tokens: int, start: float) -> Generation:
    """Drain a greedy token stream (stop at EOS or max_tokens), timing the first and last
    token from `start` (just before the prompt went in): TTFT and decode time."""
    return generation_of(tok, prompt, ((t, time.perf_counter()) for t in tokens), eos,
                         max_tokens, start)


def generation_of(tok: Any, prompt: list[int], arrivals: Iterable[tuple[int, float]],
                  eos: set[int], max_tokens: int, start: float) -> Generation:
    """The Generation of greedy tokens with the time each arrived (a runtime whose streamer
    records them), up to EOS or max_tokens."""
    out: list[int] = []
    first = last = start
    for token, at in arrivals:
        if token in eos:
            break
        last = at
        first = first if out else last
        out.append(token)
        if len(out) >= max_tokens:
            break
    return Generation(text=tok.decode(out, skip_special_tokens=True).strip(),
                      prompt_tokens=len(prompt), prefill_tokens=len(prompt),
                      completion_tokens=len(out), ttft_s=first - start, decode_s=last - first,
                      total_s=time.perf_counter() - start)
