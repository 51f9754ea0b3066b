"""Teacher backends: one small module each behind one interface, chosen in the config.

- `llama_cpp`: a local GGUF (the default);
- `transformers`: a local Hugging Face folder (safetensors, no remote code);
- `openai`: any OpenAI-compatible HTTP endpoint (vLLM, llama-server, Ollama, a hosted API),
  with a concurrency limit, timeouts, and retries with exponential backoff.

A backend turns `Request`s into `Result`s, yielding each as soon as it completes (in any
order), so the teacher stage can append it to disk at once. A request that keeps failing
comes back as a `Result` with `error` set — never silently dropped.

Example:
    >>> from pipeline.generation.backends import BACKENDS
    >>> sorted(BACKENDS)
    ['llama_cpp', 'openai', 'transformers']
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any, Protocol


@dataclass(frozen=True)
class Request:
    """One teacher generation: a prompt id and sample index, and the chat to complete."""

    row_id: str
    sample: int
    messages: tuple[dict[str, str], ...]
    max_tokens: int
    temperature: float
    seed: int
    # the task grammar the answer decodes under (pipeline.constrain), made concrete for the
    # last user message by the backend; None: free decoding. GRAMMARS says who takes what.
    grammar: str | None = None

    @property
    def key(self) -> str:
        return f"{self.row_id}#{self.sample}"


@dataclass(frozen=True)
class Result:
    request: Request
    text: str = ""
    error: str | None = None  # set when the request failed for good
    prompt_tokens: int = 0
    prefill_tokens: int = 0  # prompt tokens actually computed (local backends know this)
    completion_tokens: int = 0
    attempts: int = 1


class TeacherBackend(Protocol):
    # Requests decoded as one unit whose answers depend on which others share it (a local
    # batch: llama.cpp rounds a wider matmul differently), or None where each request's answer
    # is its own. The teacher stage hands such a backend whole waves of its fixed request
    # list, and a resumed run redoes an unfinished wave whole, so it answers as an
    # uninterrupted run did.
    wave: int | None

    def run(self, requests: Iterable[Request]) -> Iterator[Result]:
        """Yield one Result per Request as each completes."""
        ...

    def close(self) -> None:
        ...


@dataclass(frozen=True)
class BackendOptions:
    """How a backend runs (the teacher stage's settings and runtime values it reads)."""

    threads: int = 2
    n_ctx: int = 2048
    seed: int = 0
    concurrency: int = 1  # rows decoded together (llama_cpp) / requests in flight (openai)
    base_url: str | list[str] | None = None  # openai: one endpoint or several
    model_name: str | None = None
    api_key_env: str | None = None  # the variable's name; the key never goes in a file
    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_s: float = 1.0

    @classmethod
    def pick(cls, values: dict[str, Any]) -> BackendOptions:
        """The options among a stage's settings and runtime values (None: keep the default)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names and v is not None})


def make_backend(name: str, settings: BackendOptions, model_path: Any) -> TeacherBackend:
    """The registry, written once: backend name -> constructor (imported lazily: heavy libs)."""
    if name == "llama_cpp":
        from pipeline.generation.backends.llama_cpp import LlamaCppBackend

        return LlamaCppBackend(model_path, settings)
    if name == "transformers":
        from pipeline.generation.backends.transformers_hf import TransformersBackend

        return TransformersBackend(model_path, settings)
    if name == "openai":
        from pipeline.generation.backends.openai import OpenAIBackend

        return OpenAIBackend(settings)
    raise ValueError(f"unknown backend {name!r}")


BACKENDS = ("llama_cpp", "openai", "transformers")
# The grammars each backend decodes under (pipeline.constrain): llama.cpp masks every token
# the grammar disallows (llguidance) whatever the grammar; an OpenAI-compatible server takes
# a JSON schema as its structured output (`response_format`), not a label task's lark
# grammar; the transformers backend has no per-token hook here yet.
GRAMMARS = {"llama_cpp": "any", "openai": "json_schema", "transformers": "none"}


def takes_grammar(backend: str, grammar: str) -> bool:
    """Whether `backend` can decode under `grammar` (GRAMMARS)."""
    from pipeline.runkit.grammar import json_schema

    kind = GRAMMARS.get(backend, "none")
    return kind == "any" or (kind == "json_schema" and json_schema(grammar) is not None)
LIBRARIES = ("llama-cpp-python", "transformers", "httpx")  # their versions key a backend's output
