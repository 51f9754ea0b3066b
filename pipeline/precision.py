"""The device torch runs on and the precision it computes in — decided by the machine, never a
precision the hardware only emulates.

The device is accelerate's choice (`PartialState().device`: CUDA when present, the CPU
otherwise, one per rank under `accelerate launch`); `ACCELERATE_USE_CPU=1` or
`[distill] device = "cpu"` force the CPU. bf16 autocast runs only where the device has it
natively: CUDA devices whose torch reports bf16, CPUs whose torch reports AVX-512-BF16 or
AMX. Elsewhere torch emulates bf16 — measured on a 2-core AVX2 EPYC: 296 s per distill step
in bf16 against ~13 s in fp32 — so `bf16 = "auto"` (the default) falls back to fp32 on
such CPUs and to fp16 (with a gradient scaler) on GPUs without bf16.

Example:
    >>> from pipeline.precision import choose_precision
    >>> choose_precision(False, "cpu").name
    'fp32'
    >>> choose_precision("auto", "mps").name
    'fp32'
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Literal

PrecisionName = Literal["bf16", "fp16", "fp32"]


# CPU units that run bf16 natively, as torch.cpu's probes for them (private, but what torch's
# own bf16 kernels dispatch on).
CPU_BF16_PROBES = (("AVX512_BF16", "_is_avx512_bf16_supported"), ("AMX", "_is_amx_tile_supported"))


def _cpu_bf16_units() -> list[str]:
    import torch

    return [name for name, probe in CPU_BF16_PROBES if getattr(torch.cpu, probe, lambda: False)()]


def cpu_capability() -> str:
    """torch's name for the CPU's vector ISA (AVX2, AVX512, ...), plus native bf16 units."""
    import torch

    return "+".join([torch.backends.cpu.get_cpu_capability(), *_cpu_bf16_units()])


def native_bf16(device_type: str) -> bool:
    """Whether the device computes bf16 in hardware (torch's own capability calls)."""
    import torch

    if device_type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    return device_type == "cpu" and bool(_cpu_bf16_units())


def _device_words(device_type: str) -> str:
    return f"this CPU ({cpu_capability()})" if device_type == "cpu" else f"this {device_type} device"


@dataclass(frozen=True)
class Precision:
    """What autocast runs in, and why (the why goes in the distill summary and the report)."""

    name: PrecisionName
    reason: str
    device: str = "cpu"

    def autocast(self) -> Any:
        """A context for forward passes: autocast in bf16/fp16, or nothing for fp32."""
        import torch

        if self.name == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.name == "bf16" else torch.float16
        return torch.autocast(self.device, dtype=dtype)

    def scaler(self) -> Any:
        """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
        import torch

        return torch.amp.GradScaler(self.device) if self.name == "fp16" else None

    def as_dict(self) -> dict[str, str]:
        return {"precision": self.name, "precision_reason": self.reason, "device": self.device}


def choose_precision(setting: bool | str, device_type: str) -> Precision:
    """`bf16` setting ("auto", True or False) + the device -> the precision to run in."""
    if setting is False:
        return Precision("fp32", "bf16 = false", device_type)
    native = native_bf16(device_type)
    if setting is True and native:
        return Precision("bf16", "bf16 = true", device_type)
    where = _device_words(device_type)
    if setting is True:
        return Precision("bf16", f"bf16 = true, but {where} has no native bf16: torch emulates "
                                 "it (~100x slower)", device_type)
    if native:
        return Precision("bf16", f"auto: {where} runs bf16 natively", device_type)
    if device_type == "cuda":
        return Precision("fp16", f"auto: {where} has no bf16; fp16 with loss scaling", device_type)
    return Precision("fp32", f"auto: {where} has no native bf16 (emulated bf16 is ~100x slower)",
                     device_type)


def cpu_only(requested: str = "auto") -> bool:
    """Whether to tell accelerate `cpu=True`: asked for (`device = "cpu"`,
    ACCELERATE_USE_CPU=1), or no GPU to use. accelerate picks the GPU by itself when there is
    one, but under a multi-process launcher on a machine without one it sets up DDP over gloo
    only when told cpu=True (otherwise every rank trains alone)."""
    import torch
    from accelerate.utils import parse_flag_from_env

    gpu = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
    return requested == "cpu" or parse_flag_from_env("ACCELERATE_USE_CPU") or not gpu


def planned(setting: bool | str, requested: str = "auto") -> str:
    """What a training run on this machine computes on: "<device>/<precision>". It is part
    of the distill key: `bf16 = "auto"` trains in bf16 on an AVX-512-BF16 CPU and in fp32 on
    an AVX2 one, so a student cached on one is not reused on the other."""
    import torch

    device = "cpu" if cpu_only(requested) else ("cuda" if torch.cuda.is_available() else "xpu")
    return f"{device}/{choose_precision(setting, device).name}"


def torch_device(requested: str = "auto") -> Any:
    """accelerate's device for this process (CUDA when present; the CPU when asked or alone)."""
    from accelerate import PartialState

    return PartialState(cpu=cpu_only(requested)).device
