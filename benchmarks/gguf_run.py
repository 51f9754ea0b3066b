"""Run one GGUF over a prompt set in this (fresh) process: answers, latency, peak RSS.

The bench stage starts this module once per artifact in its own subprocess, so load
time and peak RSS (`ru_maxrss` of this process only) belong to that artifact alone.
A warm-up generation runs first and is not counted. Peak memory is VmHWM.

Example:
    python -m benchmarks.gguf_run spec.json result.json
    # spec.json: {"model": "m.gguf", "n_ctx": 1024, "threads": 2, "max_tokens": 96,
    #             "warmup": 1, "system": "...", "user_template": "{prompt}",
    #             "prompts": ["Hi, this is Ann Lee ..."],
    #             "synthetic": {"pp": 128, "tg": 64, "repeats": 5}}   # optional
"""

from __future__ import annotations

import json
import resource
import statistics
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
    synthetic = llama_bench(runner.llm, **spec["synthetic"]) if spec.get("synthetic") else None
    return {"load_s": load_s, "peak_rss_mb": peak_rss_mb(), "results": results,
            "synthetic": synthetic}


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": statistics.median(ordered),
            "p90": ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]}


def llama_bench(llm: Any, pp: int, tg: int, repeats: int) -> dict[str, Any]:
    """llama-bench-style fixed-length tests, after one warm-up of each, `repeats` times each.

    pp: prefill `pp` tokens from an empty cache. tg: greedy-generate `tg` tokens after a
    1-token prompt, two ways on the same file: a bare llama-cpp-python loop (eval one token,
    argmax of the logits in numpy) and the harness's own path (`Llama.generate`, as
    ChatRunner uses it), so the harness's overhead is measured, not assumed.
    """
    import numpy as np

    prompt = [llm.token_bos() if llm.token_bos() >= 0 else 0]
    filler = (llm.tokenize(b"The quick brown fox jumps over the lazy dog. ", add_bos=False) * pp)[:pp]
    n_vocab = llm.n_vocab()

    def prefill() -> float:
        llm.reset()
        start = time.perf_counter()
        llm.eval(filler)
        return pp / (time.perf_counter() - start)

    def bare() -> float:
        llm.reset()
        llm.eval(prompt)
        start = time.perf_counter()
        for _ in range(tg):
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
            llm.eval([int(np.argmax(logits))])
        return tg / (time.perf_counter() - start)

    def harness() -> float:
        llm.reset()
        start = time.perf_counter()
        for n, _token in enumerate(llm.generate(prompt, top_k=1, temp=0.0, reset=True), 1):
            if n == 1:
                start = time.perf_counter()  # like bare(): time decoding, not the prompt
            if n > tg:
                break
        return tg / (time.perf_counter() - start)

    tests = {"pp_tok_s": prefill, "tg_bare_tok_s": bare, "tg_harness_tok_s": harness}
    for fn in tests.values():
        fn()  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in tests}
    for _ in range(repeats):  # interleaved, so drift in machine load hits all tests alike
        for name, fn in tests.items():
            samples[name].append(fn())
    out: dict[str, Any] = {"pp": pp, "tg": tg, "repeats": repeats,
                           **{name: _stats(values) for name, values in samples.items()}}
    bare_median = out["tg_bare_tok_s"]["median"]
    out["harness_overhead_pct"] = round(100 * (1 - out["tg_harness_tok_s"]["median"] / bare_median), 2)
    return out


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
