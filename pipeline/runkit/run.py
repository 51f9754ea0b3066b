"""Answer a prompt with a distill-edge bundle, using nothing but the bundle folder.

This package (`runkit`: run.py, the grammar engine, the date rules) ships in every bundle
beside a two-line `run.py` (`launcher.py`), and `distill-edge run` calls it: so it imports
only the standard library, its own modules (relatively) and the artifact's runtime
(llama-cpp-python for GGUF, onnxruntime-genai for ONNX, openvino-genai for OpenVINO), never
distill-edge itself. `generation.json` in the bundle says which file to load, the system
prompt and user template the student was trained with, and the generation defaults (greedy,
max_tokens, context, threads) it was benchmarked with.

Example:
    python build/cpu-int4/bundle/run.py "Ann Lee wants 2 lamps delivered to Oslo on 2025-03-04"
    distill-edge run build/cpu-int4/bundle "Ann Lee wants 2 lamps delivered to Oslo on 2025-03-04"
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from .grammar import (
    GrammarMask,
    grammar_problems,
    hf_vocab,
    last_user,
    llama_vocab,
    structured_output,
)

SETTINGS_FILE = "generation.json"
OnToken = Callable[[str], None] | None  # a streamed piece of the answer, as it is decoded


class BundleError(ValueError):
    """The folder is not a usable bundle (named in the message)."""


def load_settings(bundle: Path) -> dict[str, Any]:
    """The bundle's generation.json; a missing or unreadable one is a BundleError."""
    path = bundle / SETTINGS_FILE
    if not path.is_file():
        raise BundleError(f"{bundle} is not a distill-edge bundle: no {SETTINGS_FILE} "
                          "(give a build/<target>/bundle folder)")
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    missing = {"format", "model", "system", "user_template", "max_tokens"} - set(settings)
    if missing:
        raise BundleError(f"{path} lacks {', '.join(sorted(missing))}: rebuild the bundle")
    return settings


def messages(settings: dict[str, Any], prompt: str) -> list[dict[str, str]]:
    """The exact messages the student was trained with, around the user's prompt."""
    out = [{"role": "system", "content": settings["system"]}]
    for shot in settings.get("few_shot", []):  # worked examples, if the student has any
        out += [{"role": "user", "content": settings["user_template"].format(prompt=shot["user"])},
                {"role": "assistant", "content": shot["assistant"]}]
    return out + [{"role": "user", "content": settings["user_template"].format(prompt=prompt)}]


def open_gguf(bundle: Path, settings: dict[str, Any]) -> Any:
    """The bundle's GGUF in llama-cpp-python, with the threads and context it was benchmarked with."""
    from llama_cpp import Llama

    threads = int(settings.get("threads", 2))
    try:
        return Llama(model_path=str(bundle / settings["model"]), n_ctx=int(settings.get("n_ctx", 1024)),
                     n_threads=threads, n_threads_batch=threads, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise BundleError(f"cannot load {bundle / settings['model']}: {exc}") from None


def ask_gguf(llm: Any, bundle: Path, settings: dict[str, Any], prompt: str, max_tokens: int,
             on_token: OnToken = None) -> str:
    """Greedy chat completion with llama-cpp-python (the GGUF's own chat template); with
    `on_token`, streamed, each piece handed to it as it is decoded (the device bench)."""
    chat = messages(settings, prompt)
    kwargs = {"max_tokens": max_tokens, "temperature": 0.0, "top_k": 1, "repeat_penalty": 1.0,
              "logits_processor": grammar_mask(bundle, settings, llm, last_user(chat))}
    if on_token is None:
        out = llm.create_chat_completion(chat, **kwargs)
        return str(out["choices"][0]["message"]["content"] or "").strip()
    pieces = []
    for chunk in llm.create_chat_completion(chat, stream=True, **kwargs):
        piece = chunk["choices"][0]["delta"].get("content")
        if piece:
            on_token(piece)
            pieces.append(piece)
    return "".join(pieces).strip()


def read_grammar(bundle: Path, settings: dict[str, Any]) -> str | None:
    """The grammar generation.json names (a constrained target), checked by llguidance; None
    without one; an unreadable or invalid file is one BundleError."""
    if not settings.get("grammar"):
        return None
    path = bundle / settings["grammar"]
    try:
        grammar = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read the grammar {path}: {exc}") from None
    is_error, problems = grammar_problems(grammar)
    if is_error:
        raise BundleError(f"{path} is not a valid grammar: {' '.join(problems)[:200]}")
    return grammar


def grammar_mask(bundle: Path, settings: dict[str, Any], llm: Any, message: str) -> Any:
    """With a `grammar` in generation.json (a constrained target): a logits processor that
    masks every token the task's grammar (llguidance) does not allow next, so an answer that
    ends always parses; `message` (the user turn) bounds its copy fields (for_message)."""
    grammar = read_grammar(bundle, settings)
    if grammar is None:
        return None
    from llama_cpp import LogitsProcessorList

    return LogitsProcessorList([GrammarMask(llama_vocab(llm), grammar, message)])


def _one_line(exc: BaseException) -> str:
    """A runtime's error as one line: ORT's carry newlines and a C++ signature before the
    cause, which follows its last "FAIL : "."""
    return " ".join(str(exc).split()).rsplit("FAIL : ", 1)[-1][:300]


def open_onnx(bundle: Path, threads: int) -> Any:
    """The model on its configured provider, or on CPU when that provider (CUDA) is absent;
    `threads` intra-op threads (ORT would otherwise take every core it sees)."""
    import onnxruntime_genai as og

    try:  # a damaged genai_config.json fails here, in the runtime's own JSON parser
        config = og.Config(str(bundle))
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": threads, "inter_op_num_threads": 1,
            "log_severity_level": 4}}}}))  # errors come back as one line, not ORT's log too
        return og.Model(config)
    except Exception as exc:  # onnxruntime-genai raises plain RuntimeError/OrtException
        if "cuda" not in str(exc).lower():
            raise BundleError(f"cannot load {bundle}: {_one_line(exc)}") from None
    print(f"no CUDA here: running {bundle.name} on the CPU provider", file=sys.stderr)
    config.clear_providers()
    return og.Model(config)


def _onnx_text_side(bundle: Path, model: Any, settings: dict[str, Any],
                    prompt: str) -> tuple[Any, list[int], set[int]]:
    """The folder's tokenizer, the prompt's ids through its chat template, and the eos ids;
    a damaged tokenizer, template or genai_config.json is a BundleError."""
    import onnxruntime_genai as og

    try:
        tok = og.Tokenizer(model)
        text = tok.apply_chat_template(json.dumps(messages(settings, prompt)),
                                       add_generation_prompt=True)
        config = json.loads((bundle / "genai_config.json").read_text(encoding="utf-8"))
        eos = config["model"]["eos_token_id"]
        return tok, list(tok.encode(text)), set(eos) if isinstance(eos, list) else {int(eos)}
    except Exception as exc:  # the runtime's RuntimeError, or the JSON's own errors
        raise BundleError(f"cannot read the tokenizer files in {bundle}: {_one_line(exc)}") from None


def onnx_grammar_mask(bundle: Path, settings: dict[str, Any], eos: set[int],
                      message: str) -> GrammarMask | None:
    """With a `grammar` in generation.json: the mask for one answer of an onnxruntime-genai
    folder (its tokenizer.json read by llguidance), else None."""
    grammar = read_grammar(bundle, settings)
    if grammar is None:
        return None
    config = json.loads((bundle / "genai_config.json").read_text(encoding="utf-8"))
    vocab = hf_vocab(bundle / "tokenizer.json", int(config["model"]["vocab_size"]), sorted(eos))
    return GrammarMask(vocab, grammar, message)


def onnx_next(gen: Any, mask: GrammarMask | None, seq: list[int]) -> int:
    """One greedy step of an onnxruntime-genai generator; under `mask` every token the
    grammar does not allow next is set to -inf first (the logits read and written back in
    their own dtype). `seq`: the tokens so far, prompt included; the new one is appended."""
    if mask is not None:
        import numpy as np

        logits = np.array(gen.get_logits())  # (1, 1, vocab), a copy
        mask(seq, logits.reshape(-1))  # masks in place
        gen.set_logits(logits)
    gen.generate_next_token()
    token = int(gen.get_next_tokens()[0])
    seq.append(token)
    return token


def ask_onnx(model: Any, bundle: Path, settings: dict[str, Any], prompt: str, max_tokens: int,
             on_token: OnToken = None) -> str:
    """Greedy generation with onnxruntime-genai (the folder's own tokenizer and chat
    template), under the bundle's grammar when it has one; `on_token` gets each token's text."""
    import numpy as np
    import onnxruntime_genai as og

    tok, ids, eos = _onnx_text_side(bundle, model, settings, prompt)
    mask = onnx_grammar_mask(bundle, settings, eos, last_user(messages(settings, prompt)))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + max_tokens, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(np.asarray([ids], dtype=np.int32))
    out: list[int] = []
    seq = list(ids)
    while not gen.is_done() and len(out) < max_tokens:
        token = onnx_next(gen, mask, seq)
        if token in eos:
            break
        out.append(token)
        if on_token is not None:
            on_token(str(tok.decode(np.asarray([token], dtype=np.int32))))
    return str(tok.decode(np.asarray(out, dtype=np.int32))).strip()


def openvino_config(threads: int, precision: str = "f32") -> dict[str, Any]:
    """OpenVINO CPU properties: `threads` threads, and f32 inference by default — the CPU
    plugin would otherwise run bf16 on CPUs with AVX-512-BF16/AMX only, so answers would differ
    by machine from what the bench measured ("inference_precision" in generation.json)."""
    return {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision}


def open_openvino(folder: Path, threads: int, precision: str = "f32") -> Any:
    """openvino-genai's LLMPipeline on the folder (CPU); a damaged folder is a BundleError."""
    import openvino_genai as ov_genai

    try:
        return ov_genai.LLMPipeline(str(folder), "CPU", **openvino_config(threads, precision))
    except Exception as exc:  # openvino raises plain RuntimeError with a C++ trace
        raise BundleError(f"cannot load {folder}: {_one_line(exc)}") from None


def openvino_structured(grammar: str | None, message: str) -> Any:
    """openvino-genai's structured output for one answer under the grammar (None: free)."""
    if grammar is None:
        return None
    import openvino_genai as ov_genai

    return ov_genai.StructuredOutputConfig(**structured_output(grammar, message))


def ask_openvino(pipe: Any, bundle: Path, settings: dict[str, Any], prompt: str,
                 max_tokens: int, on_token: OnToken = None) -> str:
    """Greedy generation with openvino-genai (the folder's converted tokenizer and its chat
    template, applied here to the trained messages), under the bundle's grammar when it has
    one (openvino-genai's structured output); `on_token` gets each streamed piece."""
    import openvino_genai as ov_genai

    chat = messages(settings, prompt)
    structured = openvino_structured(read_grammar(bundle, settings), last_user(chat))
    try:
        text = pipe.get_tokenizer().apply_chat_template(
            ov_genai.ChatHistory(chat), add_generation_prompt=True)
        config = ov_genai.GenerationConfig(max_new_tokens=max_tokens, do_sample=False,
                                           apply_chat_template=False)
        if structured is not None:
            config.structured_output_config = structured
        # openvino-genai's streamer: a callable per decoded piece; None = go on
        streamer = None if on_token is None else (lambda piece: on_token(piece))
        return str(pipe.generate(text, config, streamer)).strip()
    except Exception as exc:
        raise BundleError(f"cannot answer with {bundle}: {_one_line(exc)}") from None


class Runner(NamedTuple):
    """How a bundle layout is loaded (once) and asked (per prompt)."""

    open: Callable[[Path, dict[str, Any]], Any]
    ask: Callable[..., str]  # (model, bundle, settings, prompt, max_tokens, on_token=None)


# One runner per bundle layout, named by pipeline.formats' `bundle_runner`.
RUNNERS = {
    "gguf": Runner(open_gguf, ask_gguf),
    "onnx": Runner(lambda b, s: open_onnx(b, int(s.get("threads", 2))), ask_onnx),
    "openvino": Runner(lambda b, s: open_openvino(b, int(s.get("threads", 2)),
                                                  str(s.get("inference_precision", "f32"))),
                       ask_openvino),
}


def runner_for(bundle: Path, settings: dict[str, Any]) -> Runner:
    """The bundle's runner; a missing artifact or an unknown format is a BundleError."""
    if not (bundle / settings["model"]).exists():
        raise BundleError(f"{bundle / settings['model']} is missing: the bundle is incomplete")
    runner = RUNNERS.get(settings.get("runner", settings["format"]))
    if runner is None:
        raise BundleError(f"{bundle / SETTINGS_FILE}: unknown format {settings['format']!r}")
    return runner


def answer(bundle: Path | str, prompt: str, max_tokens: int | None = None) -> str:
    """The bundle's answer to one prompt, with the generation defaults it ships."""
    bundle = Path(bundle)
    settings = load_settings(bundle)
    runner = runner_for(bundle, settings)
    limit = int(max_tokens or settings["max_tokens"])
    return runner.ask(runner.open(bundle, settings), bundle, settings, prompt, limit)


def main(bundle: Path) -> None:
    """`python run.py "your prompt"`: the answer on stdout; a bad bundle or call, one line
    on stderr and exit 2."""
    if len(sys.argv) != 2:
        print(f"usage: python {sys.argv[0]} \"your prompt\"", file=sys.stderr)
        sys.exit(2)
    try:
        print(answer(bundle, sys.argv[1]))
    except BundleError as exc:
        print(f"run.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
