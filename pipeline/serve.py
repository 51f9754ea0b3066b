"""Serve a GGUF bundle as an OpenAI-compatible chat endpoint: llama-cpp-python's own server.

The student only works in the prompt format it was trained with, so a client should send just
the task text. The bundle's system prompt, few-shot turns and user template are applied by a
chat format registered with llama-cpp-python (`distill-edge-bundle`): it wraps the client's
last user message exactly as `run.py` does (pipeline.runkit.run.messages) and renders it
with the GGUF's own chat template. A constrained bundle's grammar (generation.json `grammar`)
masks each answer as in `run.py` (runkit.grammar.GrammarMask, its copy fields bounded by that
request's text). Everything else — HTTP, streaming, /v1/models — is llama_cpp.server's.
Loopback only by default.

Example:
    distill-edge serve build/cpu-int4/bundle --port 8000 &
    curl -s http://127.0.0.1:8000/v1/chat/completions -H 'content-type: application/json' \
      -d '{"messages": [{"role": "user", "content": "Ann Lee wants 2 lamps in Oslo on 2025-03-04"}],
           "temperature": 0}'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.runkit.grammar import GrammarMask, last_user, llama_vocab
from pipeline.runkit.run import BundleError, load_settings, read_grammar
from pipeline.runkit.run import messages as bundle_messages

CHAT_FORMAT = "distill-edge-bundle"


def register_format(model: Path, settings: dict[str, Any], grammar: str | None = None) -> None:
    """Register the bundle's prompt format (CHAT_FORMAT), rendered with the GGUF's chat
    template; with a grammar, every answer is decoded under it (GrammarMask)."""
    import llama_cpp
    from llama_cpp import llama_chat_format as fmt

    vocab = llama_cpp.Llama(str(model), vocab_only=True, verbose=False)
    template = vocab.metadata.get("tokenizer.chat_template")
    if not template:
        raise BundleError(f"{model} has no chat template (tokenizer.chat_template)")
    eos, bos = vocab.token_eos(), vocab.token_bos()
    render = fmt.Jinja2ChatFormatter(
        template=template, eos_token=vocab._model.token_get_text(eos) if eos != -1 else "",
        bos_token=vocab._model.token_get_text(bos) if bos != -1 else "")

    def _bundle_format(messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        # the task text is the client's last user message; the rest is the bundle's
        return render(messages=bundle_messages(settings, last_user(messages)))

    handler = fmt.chat_formatter_to_chat_completion_handler(_bundle_format)
    vocabs: dict[int, Any] = {}  # llguidance's view of the served model, built once

    def _constrained(*, llama: Any, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        if grammar:
            if id(llama) not in vocabs:
                vocabs[id(llama)] = llama_vocab(llama)
            wrapped = bundle_messages(settings, last_user(messages))  # the turn answered
            mask = GrammarMask(vocabs[id(llama)], grammar, last_user(wrapped))
            kwargs["logits_processor"] = llama_cpp.LogitsProcessorList(
                [mask, *(kwargs.get("logits_processor") or [])])
        return handler(llama=llama, messages=messages, **kwargs)

    fmt.LlamaChatCompletionHandlerRegistry().register_chat_completion_handler(
        CHAT_FORMAT, _constrained, overwrite=True)


def serve(bundle: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the endpoint until interrupted; a non-GGUF or broken bundle is a BundleError."""
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    settings = load_settings(bundle)
    if settings["format"] != "gguf":
        raise BundleError(f"serving a {settings['format']} bundle is not supported yet: only GGUF "
                          "bundles (llama-cpp-python's server); run its run.py per request instead")
    model = bundle / settings["model"]
    if not model.is_file():
        raise BundleError(f"{model} is missing: rebuild the bundle")
    register_format(model, settings, read_grammar(bundle, settings))
    threads = int(settings.get("threads", 2))
    app = create_app(server_settings=ServerSettings(host=host, port=port),
                     model_settings=[ModelSettings(
                         model=str(model), model_alias=bundle.resolve().parent.name,
                         chat_format=CHAT_FORMAT, n_ctx=int(settings.get("n_ctx", 1024)),
                         n_threads=threads, n_threads_batch=threads, verbose=False)])
    uvicorn.run(app, host=host, port=port, log_level="warning")
