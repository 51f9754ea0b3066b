"""Teacher backend for any OpenAI-compatible endpoint (vLLM, llama-server, Ollama, hosted APIs).

How users with more than one machine scale the teacher: `base_url` may be a list of
endpoints serving the same model (vLLM / llama-server on several machines) — each request
goes to the endpoint with the fewest requests in flight; an endpoint that fails
`DRAIN_AFTER` attempts in a row is drained for a while (30 × backoff_s) and then tried again,
so a server that dies mid-run costs retries, not rows; `served` counts the rows each
answered. Requests run on a thread pool (at most `concurrency` in flight); each has a
timeout and is retried with exponential backoff (honouring Retry-After) on 429, 5xx,
timeouts and connection errors — a retry may go to another endpoint. Other 4xx errors are
final at once. A request that keeps failing returns a Result with `error` set, so the stage
records it instead of dropping it. The API key is read from the environment variable the
config names, never from the file. A request under a JSON-schema grammar asks for that schema
as its structured output (`response_format`, made concrete for its message: copy fields as
the message's spans); servers that support it (vLLM, llama-server, hosted APIs) answer valid
JSON by construction.

Example:
    python -c "from pipeline.generation.backends import BackendOptions; \
        from pipeline.generation.backends.openai import OpenAIBackend; \
        b = OpenAIBackend(BackendOptions(base_url='http://127.0.0.1:8000/v1', model_name='qwen', \
        api_key_env='OPENAI_API_KEY', concurrency=4, timeout_s=60))"
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from pipeline.generation.backends import BackendOptions, Request, Result
from pipeline.runkit.grammar import json_schema, last_user

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
DRAIN_AFTER = 3  # failed attempts in a row that drain an endpoint for 30 × backoff_s


def response_format(grammar: str | None, messages: Sequence[dict[str, str]]) -> dict[str, Any] | None:
    """OpenAI structured output for a JSON-schema grammar, made concrete for the chat's last
    user message; None for free decoding or a grammar that is no JSON schema."""
    schema = None if grammar is None else json_schema(grammar, last_user(list(messages)))
    if schema is None:  # free, or a lark grammar (a label task's): no schema to ask for
        return None
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def endpoints(base_url: str | list[str] | None) -> list[str]:
    """The configured endpoint(s) as a list, without trailing slashes."""
    urls = base_url if isinstance(base_url, list) else [base_url or ""]
    return [u.rstrip("/") for u in urls]


class OpenAIBackend:
    wave = None  # the server batches as it likes: nothing here could replay its batches

    def __init__(self, settings: BackendOptions) -> None:
        import httpx

        self.s = settings
        key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.urls = endpoints(settings.base_url)
        self.client = httpx.Client(headers=headers, timeout=settings.timeout_s)
        self.pool = ThreadPoolExecutor(max_workers=settings.concurrency)
        self.lock = threading.Lock()
        self.in_flight = [0] * len(self.urls)
        self.failing = [0] * len(self.urls)  # failed attempts in a row, per endpoint
        self.drained_until = [0.0] * len(self.urls)
        self.served: Counter[str] = Counter()  # rows answered, per endpoint

    def _pick(self) -> int:
        """The endpoint for the next attempt: not drained, fewest requests in flight."""
        with self.lock:
            now = time.monotonic()
            i = min(range(len(self.urls)), key=lambda k: (self.drained_until[k] > now,
                                                           self.in_flight[k], self.failing[k]))
            self.in_flight[i] += 1
            return i

    def _done(self, i: int, ok: bool) -> None:
        with self.lock:
            self.in_flight[i] -= 1
            self.failing[i] = 0 if ok else self.failing[i] + 1
            if self.failing[i] >= DRAIN_AFTER:  # tried again after the drain
                self.drained_until[i] = time.monotonic() + 30 * self.s.backoff_s
                self.failing[i] = 0

    def _once(self, req: Request) -> tuple[Result | None, str, float]:
        """One HTTP attempt on the least busy endpoint: (result or None, error text,
        suggested wait before retrying)."""
        i = self._pick()
        result, error, wait_s = self._post(req, self.urls[i] + "/chat/completions")
        self._done(i, result is not None or wait_s < 0)  # a 4xx is the request's fault
        if result is not None:
            with self.lock:
                self.served[self.urls[i]] += 1
        return result, error, wait_s

    def _post(self, req: Request, url: str) -> tuple[Result | None, str, float]:
        import httpx

        body: dict[str, Any] = {"model": self.s.model_name, "messages": list(req.messages),
                                "max_tokens": req.max_tokens, "temperature": req.temperature,
                                "seed": req.seed}
        if (fmt := response_format(req.grammar, req.messages)) is not None:
            body["response_format"] = fmt
        try:
            resp = self.client.post(url, json=body)
        except httpx.TimeoutException:
            return None, f"timeout after {self.s.timeout_s} s", 0.0
        except httpx.TransportError as exc:  # refused, reset, closed mid-response
            return None, f"connection error: {type(exc).__name__}", 0.0
        if resp.status_code != 200:
            wait_s = float(resp.headers.get("retry-after", "0") or 0) if resp.status_code == 429 else 0
            retry = resp.status_code in RETRYABLE_STATUS
            return None, f"HTTP {resp.status_code}{'' if retry else ' (not retryable)'}", (
                wait_s if retry else -1.0)
        try:
            data = resp.json()
            text = data["choices"][0]["message"]["content"] or ""
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError):
            return None, "malformed response body", 0.0
        return Result(request=req, text=text.strip(), prompt_tokens=usage.get("prompt_tokens", 0),
                      completion_tokens=usage.get("completion_tokens", 0)), "", 0.0

    def _call(self, req: Request) -> Result:
        """Attempts with exponential backoff + jitter; a final failure is a Result with error."""
        error = ""
        for attempt in range(1, self.s.max_retries + 2):
            result, error, wait_s = self._once(req)
            if result is not None:
                return Result(**{**result.__dict__, "attempts": attempt})
            if wait_s < 0 or attempt > self.s.max_retries:
                return Result(request=req, error=error, attempts=attempt)
            backoff = self.s.backoff_s * 2 ** (attempt - 1) * (1 + random.random() / 4)
            time.sleep(min(max(wait_s, backoff), 60.0))
        return Result(request=req, error=error, attempts=self.s.max_retries + 1)

    def run(self, requests: Iterable[Request]) -> Iterator[Result]:
        pending: set[Future[Result]] = set()
        todo = iter(requests)
        limit = self.s.concurrency * 2  # keep the pool busy without queueing everything
        while True:
            while len(pending) < limit and (req := next(todo, None)) is not None:
                pending.add(self.pool.submit(self._call, req))
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()
