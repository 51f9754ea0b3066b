"""Time a bundle's own answers on the machine it runs on: the device bench.

distill-edge streams a runnable folder (the bundle's files plus `prompts.json`) to a device
over ssh and runs this module there, from that folder (`pipeline.device`). Like run.py it
imports only the standard library, its own modules and the artifact's runtime — the device
needs Python and that runtime, never distill-edge. It prints one JSON document on stdout:
the device (CPU model and flags, cores, memory, OS, Python, the runtime's version), the
model's load time, each prompt's answer and timings (time to the first streamed piece,
decode time, pieces streamed) and the process's peak memory. A missing runtime is
`{"missing": ..., "install": ...}` on stdout and exit 3, for the build host to say in a line.

Example:
    cd build/cpu-int4/bundle && echo '{"prompts": ["Ann Lee wants 2 lamps"]}' > prompts.json
    python -m runkit.bench prompts.json
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

from .run import BundleError, load_settings, runner_for

PROMPTS_FILE = "prompts.json"  # {"prompts": [...], "warmup": 1}
MISSING_EXIT = 3  # the device lacks the runtime (or llguidance for a grammar)
# runner -> (module it imports, the pip distribution that provides it)
RUNTIME_PACKAGES = {"gguf": ("llama_cpp", "llama-cpp-python"),
                    "onnx": ("onnxruntime_genai", "onnxruntime-genai"),
                    "openvino": ("openvino_genai", "openvino-genai")}
GRAMMAR_PACKAGE = ("llguidance", "llguidance")


def cpu_facts(cpuinfo: str) -> tuple[str, list[str]]:
    """(CPU model, flags) from /proc/cpuinfo's text: x86 names its model and `flags`; ARM
    boards name a `Model` or `Hardware` line and list `Features`.

    >>> cpu_facts("model name\\t: AMD EPYC\\nflags\\t\\t: fpu avx2\\n")
    ('AMD EPYC', ['avx2', 'fpu'])
    >>> cpu_facts("Features\\t: fp asimd\\nModel\\t\\t: Raspberry Pi 5 Model B Rev 1.0\\n")
    ('Raspberry Pi 5 Model B Rev 1.0', ['asimd', 'fp'])
    """
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())  # the first core's line
    model = next((fields[k] for k in ("model name", "Model", "Hardware", "cpu model")
                  if fields.get(k)), platform.processor() or platform.machine() or "unknown")
    return model, sorted(set((fields.get("flags") or fields.get("Features") or "").split()))


def local_cpu() -> tuple[str, list[str]]:
    """This machine's (CPU model, flags)."""
    try:
        return cpu_facts(Path("/proc/cpuinfo").read_text(encoding="utf-8"))
    except OSError:  # not Linux
        return cpu_facts("")


def device_facts(runner: str) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, memory, OS, Python, the runtime."""
    model, flags = local_cpu()
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    dist = RUNTIME_PACKAGES[runner][1]
    return {"host": platform.node(), "machine": platform.machine(), "cpu": model,
            "cpu_flags": flags, "cores": os.cpu_count(), "memory_gb": memory_gb,
            "os": platform.platform(), "python": platform.python_version(),
            "runtime": dist, "runtime_version": importlib.metadata.version(dist)}


def missing_packages(runner: str, grammar: bool) -> list[tuple[str, str]]:
    """(module, pip name) of what this folder needs and this Python cannot import."""
    needed = [RUNTIME_PACKAGES[runner]] + ([GRAMMAR_PACKAGE] if grammar else [])
    return [(mod, dist) for mod, dist in needed if importlib.util.find_spec(mod) is None]


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB.

    VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so a child started by
    a parent holding a 2.7 GB model reported 2.7 GB (seen here). VmHWM belongs to the
    address space exec created.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    # ru_maxrss: KiB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin"
                                                                 else 2**10)


def timed_answers(folder: Path, prompts: list[str], warmup: int) -> dict[str, Any]:
    """Load the folder's model once, answer `warmup` prompts untimed, then each prompt one at
    a time, streamed: time to the first piece, decode time after it, pieces streamed."""
    settings = load_settings(folder)
    runner = runner_for(folder, settings)
    max_tokens = int(settings["max_tokens"])
    start = time.perf_counter()
    model = runner.open(folder, settings)
    load_s = time.perf_counter() - start
    for prompt in prompts[:warmup]:
        runner.ask(model, folder, settings, prompt, max_tokens)
    results = []
    for prompt in prompts:
        stamps: list[float] = []
        t0 = time.perf_counter()
        text = runner.ask(model, folder, settings, prompt, max_tokens,
                          lambda _piece, seen=stamps: seen.append(time.perf_counter()))
        end = time.perf_counter()
        first = stamps[0] if stamps else end
        results.append({"response": text, "ttft_s": first - t0, "decode_s": end - first,
                        "pieces": len(stamps), "total_s": end - t0})
    return {"load_s": load_s, "max_tokens": max_tokens, "results": results}


def main(argv: list[str]) -> int:
    """`python -m runkit.bench prompts.json` in a bundle folder: one JSON document on stdout."""
    folder = Path.cwd()
    spec = json.loads(Path(argv[0] if argv else PROMPTS_FILE).read_text(encoding="utf-8"))
    try:
        settings = load_settings(folder)
        runner = str(settings.get("runner", settings["format"]))
        missing = missing_packages(runner, bool(settings.get("grammar")))
        if missing:
            print(json.dumps({"missing": [m for m, _ in missing],
                              "install": "pip install " + " ".join(d for _, d in missing)}))
            return MISSING_EXIT
        out = timed_answers(folder, list(spec["prompts"]), int(spec.get("warmup", 1)))
    except BundleError as exc:
        print(json.dumps({"error": str(exc)}))
        return 2
    print(json.dumps({"device": device_facts(runner), **out, "peak_rss_mb": peak_rss_mb()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
