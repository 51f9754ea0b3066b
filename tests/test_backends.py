"""The openai teacher backend against a real llama.cpp server and a fault-injecting one.

Both servers listen on 127.0.0.1 only, are started and stopped by the tests, and every
request loop is bounded (few requests, short timeouts, a handful of retries).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.generation.backends import BackendOptions, Request
from pipeline.generation.backends.openai import OpenAIBackend
from tests.conftest import run_cli

BODY = {"choices": [{"message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1}}


class FaultHandler(BaseHTTPRequestHandler):
    """Behaviour chosen by the first path segment: /flaky/, /fail500/, /hang/, /close/, /bad400/."""

    hits: Counter[str] = Counter()
    seen: dict[bytes, int] = {}  # /fifth/: each distinct request body, in first-seen order
    heal = False  # /fifth/: True serves every request

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    served_params = 1000  # what GET /ident/v1/models says the model "m" is

    def do_GET(self) -> None:  # noqa: N802
        if not self.path.startswith(("/ident/", "/ident2/")):
            self.send_error(404)
            return
        params = FaultHandler.served_params + self.path.startswith("/ident2/")  # another model
        payload = json.dumps({"object": "list", "data": [
            {"id": "m", "object": "model", "created": time.time(), "owned_by": "me",
             "meta": {"n_params": params}},
            {"id": "other", "object": "model", "created": time.time()}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        mode = self.path.split("/")[1]
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        FaultHandler.hits[mode] += 1
        index = FaultHandler.seen.setdefault(body, len(FaultHandler.seen))
        if mode == "hang":
            time.sleep(2.0)
        if mode == "close" or (mode == "dies" and FaultHandler.hits[mode] > 3):  # dead server
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status = {"fail500": 500, "bad400": 400, "hang": 200}.get(mode, 200)
        if mode == "flaky" and FaultHandler.hits[mode] <= 2:
            status = 503
        if mode == "ratelimit" and FaultHandler.hits[mode] == 1:
            status = 429
        if mode == "fifth" and not FaultHandler.heal and index % 5 == 0:
            status = 500  # every fifth distinct request fails, retries included
        payload = json.dumps(BODY if status == 200 else {"error": "injected"}).encode()
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "0")
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture(scope="module")
def fault_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FaultHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _backend(url: str, retries: int = 3) -> OpenAIBackend:
    return OpenAIBackend(BackendOptions(base_url=url, model_name="m", api_key_env=None,
                                        concurrency=2, timeout_s=0.5, max_retries=retries,
                                        backoff_s=0.01))


def _one(url: str, retries: int = 3):  # type: ignore[no-untyped-def]
    backend = _backend(url, retries)
    req = Request(row_id="a", sample=0, messages=({"role": "user", "content": "hi"},),
                  max_tokens=4, temperature=0.0, seed=0)
    try:
        return list(backend.run([req]))[0]
    finally:
        backend.close()


def test_retries_recover_from_5xx_and_429(fault_server: str) -> None:
    res = _one(f"{fault_server}/flaky/v1")
    assert res.error is None and res.text == "ok" and res.attempts == 3
    res = _one(f"{fault_server}/ratelimit/v1")
    assert res.error is None and res.attempts == 2


@pytest.mark.parametrize(("mode", "error", "attempts"), [
    ("fail500", "HTTP 500", 4),
    ("hang", "timeout after 0.5 s", 4),
    ("close", "connection error", 4),
    ("bad400", "HTTP 400 (not retryable)", 1),
])
def test_failures_are_recorded_not_dropped(fault_server: str, mode: str, error: str,
                                           attempts: int) -> None:
    res = _one(f"{fault_server}/{mode}/v1")
    assert res.error is not None and res.error.startswith(error), res.error
    assert res.attempts == attempts


def test_concurrency_returns_every_request(fault_server: str) -> None:
    backend = _backend(f"{fault_server}/ok/v1")
    reqs = [Request(row_id=str(i), sample=0, messages=({"role": "user", "content": "hi"},),
                    max_tokens=4, temperature=0.0, seed=0) for i in range(10)]
    try:
        keys = sorted(r.request.key for r in backend.run(reqs))
    finally:
        backend.close()
    assert keys == sorted(r.key for r in reqs)


def test_a_teacher_behind_two_endpoints_loses_no_row_when_one_dies(fault_server: str) -> None:
    """Two endpoints: one answers 3 requests and then refuses every connection (a killed
    server). Every request is answered — by the survivor after the dead one is drained — and
    `served` says who answered how many."""
    FaultHandler.hits["dies"] = 0
    urls = [f"{fault_server}/dies/v1", f"{fault_server}/ok/v1"]
    backend = OpenAIBackend(BackendOptions(base_url=urls, model_name="m", api_key_env=None,
                                           concurrency=2, timeout_s=0.5, max_retries=4,
                                           backoff_s=0.01))
    reqs = [Request(row_id=str(i), sample=0, messages=({"role": "user", "content": "hi"},),
                    max_tokens=4, temperature=0.0, seed=0) for i in range(20)]
    try:
        results = list(backend.run(reqs))
    finally:
        backend.close()
    assert sorted(r.request.key for r in results if r.error is None) == sorted(r.key for r in reqs)
    assert backend.served[urls[0]] <= 3 and sum(backend.served.values()) == 20


def test_endpoints_must_serve_the_same_model(fault_server: str, tmp_path: Path) -> None:
    from pipeline.errors import UserError
    from pipeline.generation.remote_identity import remote_teacher

    same = [f"{fault_server}/ident/v1", f"{fault_server}/ident/v2"]
    digest, _ = remote_teacher(same, "m", None, 2.0, False, tmp_path)
    assert digest != remote_teacher(same[0], "m", None, 2.0, False, tmp_path)[0]
    with pytest.raises(UserError, match=f"teacher.base_url: {fault_server}/ident2/v1 serves "
                                        "another model as 'm'"):
        remote_teacher([same[0], f"{fault_server}/ident2/v1"], "m", None, 2.0, False, tmp_path)


def test_the_teacher_stage_across_two_endpoints_matches_one_server(fault_server: str,
                                                                  tmp_path: Path) -> None:
    """A build whose teacher is behind two endpoints, one of them dying after 3 answers,
    ends with every row — the same rows as a one-server build — and its stats say which
    endpoint served how many."""
    FaultHandler.hits["dies"] = 0
    urls = [f"{fault_server}/dies/v1", f"{fault_server}/ok/v1"]

    def build(folder: str, base_url: str) -> list[tuple[str, str]]:
        cfg = _config(tmp_path, "X", 10)
        cfg.write_text(cfg.read_text().replace('"X"', base_url).replace("max_retries = 1",
                                                                        "max_retries = 4"))
        proc = run_cli("build", "--config", str(cfg), "--build-dir", str(tmp_path / folder),
                       "--until", "teacher")
        assert proc.returncode == 0, proc.stderr
        (out,) = (tmp_path / folder / "cache" / "teacher").glob("*[!l]")  # not a .partial
        stats = json.loads((out / "stats.json").read_text())
        assert stats.get("served_by", {}).keys() == (set(urls) if base_url.startswith("[") else set())
        return sorted((r["id"], r["response"]) for r in map(json.loads, (out / "rows.jsonl").open()))

    two = build("two", json.dumps(urls))
    assert len(two) == 10 and two == build("one", json.dumps(urls[1]))


def _config(tmp_path: Path, base_url: str, rows: int) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[teacher]\nbackend = "openai"\nbase_url = "{base_url}"\nmodel_name = "m"\n'
                   'max_tokens = 48\ntimeout_s = 0.5\nmax_retries = 1\nbackoff_s = 0.01\n'
                   f'[student]\nmodel = "smollm2-135m-instruct-q4_1"\n[task]\nmax_train_rows = {rows}\n')
    return cfg


def test_everything_failing_is_one_clean_error(fault_server: str, tmp_path: Path) -> None:
    proc = run_cli("build", "--config", str(_config(tmp_path, f"{fault_server}/fail500/v1", 3)),
                   "--build-dir", str(tmp_path / "b"), "--until", "teacher")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "distill-edge: error: the teacher failed on all 3 requests (HTTP 500): check backend, "
        "base_url and model")


def test_failed_teacher_requests_are_retried_on_the_next_build(fault_server: str,
                                                               tmp_path: Path) -> None:
    """A fifth of the requests fail for good: the build stops with one line (exit 1), the
    step is not committed, and the next build asks only those again — ending with the same
    rows as a build that never failed. A known loss can be accepted instead."""
    FaultHandler.seen.clear()
    FaultHandler.heal = False
    cfg = _config(tmp_path, f"{fault_server}/fifth/v1", 10)

    def build(folder: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return run_cli("build", "--config", str(cfg), "--build-dir", str(tmp_path / folder),
                       "--until", "teacher", *extra)

    def rows(folder: str, partial: bool = False) -> list[tuple[str, str]]:
        (path,) = [p for p in (tmp_path / folder / "cache" / "teacher").glob("*/rows.jsonl")
                   if p.parent.name.endswith(".partial") is partial]
        return sorted((r["id"], r["response"]) for r in map(json.loads, path.open()))

    first = build("b")
    assert first.returncode == 1, first.stderr
    line = first.stderr.strip().splitlines()[-1]
    assert line.startswith("distill-edge: error: the teacher failed on 2 of 10 requests after "
                           "retries (HTTP 500): run the build again to retry only those"), line
    assert len(rows("b", partial=True)) == 8  # not committed: kept for the next build
    accepted = build("a", "--allow-teacher-failures", "2")  # a known loss: the build goes on
    assert accepted.returncode == 0 and len(rows("a")) == 8
    FaultHandler.heal = True
    second = build("b")
    assert second.returncode == 0 and "resuming: 8 of 10 answers already done" in second.stderr
    assert build("c").returncode == 0  # a build on the healed server that never saw a failure
    assert rows("b") == rows("c") and len(rows("b")) == 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def llama_server(model: Path, threads: int = 2) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m llama_cpp.server` on a free loopback port, once GET /v1/models answers:
    (the process, its base URL). Killed on exit."""
    import httpx

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model),
                               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
                               "--n_threads", str(threads)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        yield server, url
    finally:
        server.kill()
        server.wait(timeout=30)


def _teacher_rows(folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The committed teacher step's rows (by id) and stats of a build folder."""
    (out,) = [p for p in (folder / "cache" / "teacher").glob("*") if p.is_dir()
              and not p.name.endswith(".partial")]
    rows = sorted(map(json.loads, (out / "rows.jsonl").open()), key=lambda r: r["id"])
    return rows, json.loads((out / "stats.json").read_text())


def _real_config(tmp_path: Path, base_url: str, rows: int) -> Path:
    cfg = _config(tmp_path, "X", rows)
    cfg.write_text(cfg.read_text().replace('"X"', base_url)
                   .replace("timeout_s = 0.5", "timeout_s = 60").replace("max_retries = 1",
                                                                          "max_retries = 4"))
    return cfg


@pytest.mark.e2e
def test_teacher_stage_through_a_real_llama_cpp_server(smollm_gguf: Path, tmp_path: Path) -> None:
    with llama_server(smollm_gguf) as (_, url):
        cfg = _real_config(tmp_path, json.dumps(url), 4)
        proc = run_cli("build", "--config", str(cfg), "--build-dir", str(tmp_path / "b"),
                       "--until", "teacher")
        assert proc.returncode == 0, proc.stderr[-2000:]
    rows, _ = _teacher_rows(tmp_path / "b")
    assert [r["id"] for r in rows] == [f"train-{i:05d}" for i in range(4)]
    assert all(r["response"] and r["completion_tokens"] > 0 for r in rows)


@pytest.mark.slow
def test_two_real_servers_one_killed_mid_run_give_a_one_server_build(smollm_gguf: Path,
                                                                    tmp_path: Path) -> None:
    """Two llama.cpp servers on loopback; one is killed (SIGKILL) once the teacher has written
    3 rows. The build ends with every row, the same rows as a build on one server (greedy), and
    the stats count the rows each endpoint served."""
    n = 16
    with llama_server(smollm_gguf, 1) as (doomed, url), llama_server(smollm_gguf, 1) as (_, other):
        urls = [url, other]
        cmd = [sys.executable, "-m", "pipeline.cli", "build", "--config",
               str(_real_config(tmp_path, json.dumps(urls), n)), "--build-dir",
               str(tmp_path / "two"), "--until", "teacher"]
        build = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        partial = tmp_path / "two" / "cache" / "teacher"
        deadline = time.time() + 300
        while time.time() < deadline and build.poll() is None:
            done = sum(len(p.read_text().splitlines()) for p in partial.glob("*.partial/rows.jsonl"))
            if done >= 3:
                break
            time.sleep(0.05)
        assert build.poll() is None, "the build ended before the kill: nothing was tested"
        doomed.kill()
        _, err = build.communicate(timeout=600)
        assert build.returncode == 0, err[-2000:]
        proc = run_cli("build", "--config", str(_real_config(tmp_path, json.dumps(urls[1]), n)),
                       "--build-dir", str(tmp_path / "one"), "--until", "teacher")
        assert proc.returncode == 0, proc.stderr[-2000:]
    two, stats = _teacher_rows(tmp_path / "two")
    one, _ = _teacher_rows(tmp_path / "one")
    assert len(two) == n and [(r["id"], r["response"]) for r in two] == [
        (r["id"], r["response"]) for r in one]
    served = stats["served_by"]
    assert sum(served.values()) == n and served.get(urls[0], 0) < n, served


def test_a_remote_teacher_is_keyed_by_what_the_server_says_it_serves(
        fault_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The /models entry (minus per-request fields) enters the key: the same model keeps its
    key across requests, another model under the same name changes it with a message, or is
    refused when pinned; a server that does not describe its models keeps the recorded one."""
    from pipeline.errors import UserError
    from pipeline.generation.remote_identity import (
        resolve_identity,
        served_identity,
        teacher_digest,
    )

    url = f"{fault_server}/ident/v1"
    monkeypatch.setattr(FaultHandler, "served_params", 1000)
    assert served_identity(url, "m", None, 2.0) == {"id": "m", "owned_by": "me",
                                                    "meta": {"n_params": 1000}}
    first, note = resolve_identity(url, "m", None, 2.0, False, tmp_path)
    assert note is None
    assert resolve_identity(url, "m", None, 2.0, True, tmp_path) == (first, None)  # created moved
    monkeypatch.setattr(FaultHandler, "served_params", 2000)  # other weights, same name
    with pytest.raises(UserError, match="changed since .*pin_identity = false"):
        resolve_identity(url, "m", None, 2.0, True, tmp_path)
    second, note = resolve_identity(url, "m", None, 2.0, False, tmp_path)
    assert second != first and note is not None and "generated again" in note
    # llama-server lists the file it loaded under any name: keyed by everything it lists
    assert set(served_identity(url, "unlisted", None, 2.0) or {}) == {"served"}
    # the same slot, but the server stopped describing itself: the recorded identity holds
    quiet = f"{fault_server}/ok/v1"
    digest, note = resolve_identity(quiet, "m", None, 2.0, False, tmp_path)
    assert note is not None and "URL and model name only" in note
    (tmp_path / "remote-teachers.json").write_text(
        (tmp_path / "remote-teachers.json").read_text().replace(f"{url} m", f"{quiet} m"))
    digest, note = resolve_identity(quiet, "m", None, 2.0, False, tmp_path)
    assert note is not None and "using the model identity recorded" in note
    assert digest == teacher_digest(quiet, "m", {"id": "m", "owned_by": "me",
                                                 "meta": {"n_params": 2000}})
