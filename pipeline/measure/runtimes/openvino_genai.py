"""OpenVINO runtime adapter: an openvino-genai model folder (openvino_model.xml + tokenizers).

The folder is what the OpenVINO export stage writes and what an OpenVINO target ships.
Answers come from openvino-genai's `LLMPipeline` (the runtime a bundle's run.py uses),
fed the same token ids as every other runtime (the folder's HF chat template) and timed
per token by a streamer; teacher-forced log-probs come from the IR itself, compiled by
OpenVINO and run once over the whole sequence (the pipeline returns no logits). Under a task
grammar (`constrain`) each answer uses openvino-genai's structured output (xgrammar), as the
bundle's run.py does: the schema made concrete for the message. Inference
precision is pinned to f32 (`runkit.run.openvino_config`): OpenVINO's CPU plugin would pick
bf16 on CPUs with AVX-512-BF16/AMX only, and the numbers would then depend on the machine.

Example:
    python -c "from pipeline.measure.runtimes.openvino_genai import OpenVinoGenaiRuntime; \
        r = OpenVinoGenaiRuntime('build/openvino-int4', 1024, 2); \
        print(r.chat([{'role': 'user', 'content': 'Ann Lee wants 2 lamps'}], 32).text)"
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.generation.llm import Generation
from pipeline.measure.runtimes import chat_prompt, generation_of, log_softmax, run_interleaved
from pipeline.runkit.grammar import last_user
from pipeline.runkit.run import openvino_structured


def compile_ir(folder: Path, threads: int) -> Any:
    """The folder's IR compiled for the CPU, f32, `threads` threads."""
    import openvino as ov

    from pipeline.models.openvino_ir import MODEL_XML
    from pipeline.runkit.run import openvino_config

    return ov.Core().compile_model(str(folder / MODEL_XML), "CPU", openvino_config(threads))


def ir_logits(compiled: Any, tokens: list[int]) -> np.ndarray:
    """Logits for every position of `tokens`: one forward pass of the IR from an empty cache."""
    request = compiled.create_infer_request()
    request.reset_state()
    n = len(tokens)
    request.infer({"input_ids": np.asarray([tokens], dtype=np.int64),
                   "attention_mask": np.ones((1, n), dtype=np.int64),
                   "position_ids": np.arange(n, dtype=np.int64)[None],
                   "beam_idx": np.zeros(1, dtype=np.int32)})
    return np.asarray(request.get_tensor("logits").data[0], dtype=np.float32)


class OpenVinoGenaiRuntime:
    def __init__(self, model: str, n_ctx: int, threads: int) -> None:
        import openvino as ov
        import openvino_genai as og

        from pipeline.models.hf import load_tokenizer
        from pipeline.runkit.run import open_openvino

        self.ov, self.og, self.folder, self.threads = ov, og, Path(model), threads
        self._compiled: Any = None  # the IR for teacher-forced log-probs, compiled once
        self.pipe = open_openvino(self.folder, threads)
        self.tok = load_tokenizer(self.folder)
        self.n_vocab = int(json.loads((self.folder / "config.json").read_text())["vocab_size"])
        eos = self.tok.eos_token_id
        self.eos = {eos} if isinstance(eos, int) else set(eos or [])
        self.grammar: str | None = None

    def constrain(self, grammar: str) -> None:
        """Answer under this grammar from now on (pipeline.constrain)."""
        self.grammar = grammar

    def _generate(self, prompt: list[int], new: int, fixed: bool = False,
                  structured: Any = None) -> list[tuple[int, float]]:
        """Greedy tokens after `prompt` with the time each arrived (`fixed`: exactly `new`;
        `structured`: openvino-genai's structured output config)."""
        og = self.og
        arrived: list[tuple[int, float]] = []

        class Clock(og.StreamerBase):  # type: ignore[misc]
            def write(self, token: Any) -> Any:
                now = time.perf_counter()
                arrived.extend((int(t), now) for t in (token if isinstance(token, list) else [token]))
                return og.StreamingStatus.RUNNING

            def end(self) -> None:
                pass

        config = og.GenerationConfig(max_new_tokens=new, do_sample=False, apply_chat_template=False,
                                     **({"min_new_tokens": new, "ignore_eos": True} if fixed else {}))
        if structured is not None:
            config.structured_output_config = structured
        ids = np.asarray([prompt], dtype=np.int64)
        inputs = og.TokenizedInputs(self.ov.Tensor(ids), self.ov.Tensor(np.ones_like(ids)))
        self.pipe.generate(inputs, config, Clock())
        return arrived

    def chat(self, messages: list[dict[str, str]], max_tokens: int) -> Generation:
        prompt = chat_prompt(self.tok, messages)
        structured = openvino_structured(self.grammar, last_user(messages))
        start = time.perf_counter()
        arrived = self._generate(prompt, max_tokens, structured=structured)
        return generation_of(self.tok, prompt, arrived, self.eos, max_tokens, start)

    def logprobs(self, tokens: list[int], start: int) -> np.ndarray:
        """Teacher-forced log-probs of tokens[start:], from one pass of the IR."""
        if self._compiled is None:
            self._compiled = compile_ir(self.folder, self.threads)
        logits = ir_logits(self._compiled, tokens)
        return log_softmax(logits[start - 1:len(tokens) - 1])

    def synthetic(self, pp: int, tg: int, repeats: int) -> dict[str, Any]:
        """Fixed-length prefill (`pp` tokens, timed to the first token) and greedy decode
        (`tg` tokens after the first, EOS ignored)."""
        filler = (self.tok("The quick brown fox jumps over the lazy dog. ")["input_ids"] * pp)[:pp]

        def prefill() -> float:
            begin = time.perf_counter()
            arrived = self._generate(filler, 1)
            return pp / (arrived[0][1] - begin)

        def decode() -> float:
            arrived = self._generate(filler[:1], tg + 1, fixed=True)
            return tg / (arrived[-1][1] - arrived[0][1])

        out = run_interleaved({"pp_tok_s": prefill, "tg_harness_tok_s": decode}, repeats)
        return {"pp": pp, "tg": tg, "repeats": repeats, **out}
