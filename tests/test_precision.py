"""Precision and device by measurement of the machine: bf16 only where it is native, the device
from accelerate (the CPU here, forceable), and the choice written in the training summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline import precision
from pipeline.precision import choose_precision, cpu_only, native_bf16, torch_device
from pipeline.prompts import ChatPrompt


@pytest.mark.parametrize("has_bf16", [True, False])
def test_native_bf16_follows_torchs_cpu_probes(monkeypatch: pytest.MonkeyPatch, has_bf16: bool) -> None:
    """Both answers of torch's capability check, faked: AVX-512-BF16 (or AMX) -> native."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: has_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert native_bf16("cpu") is has_bf16
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: has_bf16)
    assert native_bf16("cpu") is has_bf16


@pytest.mark.parametrize(("device", "native", "setting", "expected"), [
    ("cpu", False, "auto", "fp32"),   # AVX2 laptops and cloud CPUs: never emulated bf16
    ("cpu", True, "auto", "bf16"),    # AVX-512-BF16 / AMX: bf16 as before
    ("cuda", True, "auto", "bf16"),
    ("cuda", False, "auto", "fp16"),  # pre-Ampere GPUs: fp16 with a loss scaler
    ("mps", False, "auto", "fp32"),
    ("cpu", False, False, "fp32"),
    ("cpu", True, False, "fp32"),
    ("cpu", False, True, "bf16"),     # forced by the user: honoured, with the warning in the reason
])
def test_choose_precision(monkeypatch: pytest.MonkeyPatch, device: str, native: bool,
                          setting: Any, expected: str) -> None:
    monkeypatch.setattr(precision, "native_bf16", lambda _device: native)
    monkeypatch.setattr(precision, "cpu_capability", lambda: "AVX2")
    chosen = choose_precision(setting, device)
    assert chosen.name == expected and chosen.device == device
    if device == "cpu" and not native and setting != False:  # noqa: E712 - the setting may be "auto"
        assert "no native bf16" in chosen.reason
    if device == "cpu":  # a GradScaler for CUDA warns without one
        assert chosen.scaler() is None


def test_autocast_context_matches_the_choice() -> None:
    with choose_precision(False, "cpu").autocast():
        assert not torch.is_autocast_enabled("cpu")
    with precision.Precision("bf16", "test", "cpu").autocast():
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_the_device_is_the_cpu_here_and_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: accelerate would rightly choose it")
    assert torch_device().type == "cpu"
    assert cpu_only("auto")  # no GPU: accelerate must be told, or DDP ranks train alone
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU box, faked
    assert not cpu_only("auto") and cpu_only("cpu")
    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")
    assert cpu_only("auto")


def _examples(tok: Any) -> list[Any]:
    from pipeline.training.sft_data import encode_example

    prompt = ChatPrompt(system="Extract.")
    return [encode_example(tok, prompt, f"order {i}", '{"name":"Ann"}') for i in range(2)]


@pytest.mark.parametrize("native", [False, True])
def test_training_records_device_and_precision(monkeypatch: pytest.MonkeyPatch, tiny_hf: Path,
                                               tmp_path: Path, native: bool) -> None:
    """`bf16 = "auto"` trains in fp32 on a CPU without native bf16 and in bf16 with it (both
    faked), `device = "cpu"` reaches accelerate, and the summary says what ran and why."""
    import accelerate

    from pipeline.models.hf import load_causal_lm, load_tokenizer
    from pipeline.training.trainer import TrainSettings, train

    seen: dict[str, Any] = {}
    real = accelerate.Accelerator

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(accelerate, "Accelerator", spy)
    monkeypatch.setattr(precision, "native_bf16", lambda _device: native)
    tok = load_tokenizer(tiny_hf)
    settings = {"seed": 0, "batch_size": 2, "epochs": 1, "learning_rate": 1e-3,
                "weight_decay": 0.0, "warmup_ratio": 0.0, "bf16": "auto", "device": "cpu"}
    _, summary = train(load_causal_lm(tiny_hf), _examples(tok), TrainSettings(**settings),
                       tok.pad_token_id, tmp_path)
    assert seen["cpu"] is True  # asked for (and, here, no GPU either)
    assert summary["device"] == "cpu"
    assert summary["precision"] == ("bf16" if native else "fp32")
    assert ("natively" if native else "no native bf16") in summary["precision_reason"]
    assert json.loads((tmp_path / "train_log.jsonl").read_text().splitlines()[0])["step"] == 1
