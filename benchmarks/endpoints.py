"""Teacher throughput behind one server vs two: the openai backend's endpoint spreading, measured.

Starts `python -m llama_cpp.server` on loopback — one server with all `--threads`, then two
with half each (on one machine the two share its cores: this measures the spreading's
overhead and the answers' identity, not a cluster's speed-up; on two machines each server
keeps its cores) — and sends the same prompts (the default task's train split under its
teacher prompt, greedy) through `OpenAIBackend` with `concurrency` requests in flight per
server. Prints rows/min of each, the rows each endpoint served, and how many answers match.

Example:
    .venv/bin/python -m benchmarks.endpoints --rows 16 --threads 2
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def servers(model: Path, count: int, threads: int) -> Iterator[list[str]]:
    """`count` llama.cpp servers of `model` on loopback, `threads` each, once all answer
    GET /v1/models: their base URLs. Stopped on exit."""
    import httpx

    ports = [_free_port() for _ in range(count)]
    procs = [subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model),
                               "--host", "127.0.0.1", "--port", str(p), "--n_ctx", "2048",
                               "--n_threads", str(threads), "--n_threads_batch", str(threads)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p in ports]
    urls = [f"http://127.0.0.1:{p}/v1" for p in ports]
    try:
        for url in urls:
            deadline = time.time() + 120
            while time.time() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                        break
                time.sleep(0.3)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def run(urls: list[str], chats: list[list[dict[str, str]]], per_server: int,
        max_tokens: int) -> tuple[float, dict[str, int], list[str]]:
    """(wall seconds, rows served per endpoint, answers in prompt order) of one pass."""
    from pipeline.generation.backends import BackendOptions, Request
    from pipeline.generation.backends.openai import OpenAIBackend

    backend = OpenAIBackend(BackendOptions(base_url=urls, model_name="teacher",
                                           concurrency=per_server * len(urls), timeout_s=600))
    reqs = [Request(row_id=str(i), sample=0, messages=tuple(c), max_tokens=max_tokens,
                    temperature=0.0, seed=0) for i, c in enumerate(chats)]
    start = time.perf_counter()
    try:
        texts = {int(r.request.row_id): r.text for r in backend.run(reqs)}
    finally:
        backend.close()
    return time.perf_counter() - start, dict(backend.served), [texts[i] for i in range(len(chats))]


def measure(model: Path, rows: int, threads: int, per_server: int) -> dict[str, object]:
    from benchmarks.teacher_throughput import teacher_chats
    from pipeline.config import load_config

    chats, max_tokens = teacher_chats(rows), load_config(None).teacher.max_tokens
    out: dict[str, object] = {"rows": rows, "threads": threads, "per_server": per_server}
    answers = {}
    for count in (1, 2):
        with servers(model, count, max(1, threads // count)) as urls:
            run(urls, chats[:count], 1, 8)  # warm-up: each server loads its first graph
            wall, served, answers[count] = run(urls, chats, per_server, max_tokens)
        out[f"servers_{count}"] = {"rows_per_min": round(rows / wall * 60, 2), "wall_s": round(wall, 1),
                                   "served": sorted(served.values(), reverse=True)}
    out["same_answers"] = sum(a == b for a, b in zip(answers[1], answers[2], strict=True))
    return out


def main() -> None:
    from benchmarks.teacher_throughput import teacher_args, teacher_gguf

    parser = teacher_args(__doc__ or "", 16)
    parser.add_argument("--per-server", type=int, default=2, help="requests in flight per server")
    args = parser.parse_args()
    result = measure(teacher_gguf(args.model), args.rows, args.threads, args.per_server)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
