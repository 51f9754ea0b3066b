"""Run one GGUF over a prompt set in this (fresh) process: answers, latency, peak RSS.

The bench stage starts this module once per artifact in its own subprocess, so load
time and peak RSS (`ru_maxrss` of this process only) belong to that artifact alone.
A warm-up generation runs first and is not counted. Peak memory is VmHWM.

Example:
    python -m benchmarks.gguf_run spec.json result.json
    # spec.json: {"model": "m.gguf", "n_ctx": 1024, "threads": 2, "max_tokens": 96,
    #             "warmup": 1, "system": "...", "user_template": "{prompt}",
    #             "prompts": ["Hi, this is Ann Lee ..."]}
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Generate for every prompt; return per-prompt timings and the answers."""
    from pipeline.llm import ChatRunner, open_gguf

    start = time.perf_counter()
    runner = ChatRunner(open_gguf(spec["model"], spec["n_ctx"], spec["threads"]))
    load_s = time.perf_counter() - start
    system, template = spec["system"], spec["user_template"]
    for prompt in spec["prompts"][: spec["warmup"]]:
        runner.chat(system, template.format(prompt=prompt), spec["max_tokens"])
    results = []
    for prompt in spec["prompts"]:
        gen = runner.chat(system, template.format(prompt=prompt), spec["max_tokens"])
        results.append({"response": gen.text, "prompt_tokens": gen.prompt_tokens,
                        "prefill_tokens": gen.prefill_tokens,
                        "completion_tokens": gen.completion_tokens, "ttft_s": gen.ttft_s,
                        "decode_s": gen.decode_s, "total_s": gen.total_s})
    return {"load_s": load_s, "peak_rss_mb": peak_rss_mb(), "results": results}


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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # non-Linux: KiB there too


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    out = run(spec)
    Path(argv[1]).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
