"""Bench-on-device stage: the shipped artifact's latency measured on the build's [device].

Off without a `[device]` (only a summary saying so). With one:
setup:   the target's export, the student's tokenizer files, the eval prompts and the
         build host's bench answers (for the same-answers check).
run:     a runnable folder like the bundle's (pipeline.runnable) plus prompts.json (the
         first `latency_prompts` eval prompts) is streamed to the device over ssh and timed
         there one prompt at a time by its own run.py code (pipeline.runkit.bench), after a
         warm-up; the device's CPU model, flags, cores, memory and runtime version come back.
cleanup: device.json — the device's facts, load time, time to first token, decode speed
         (streamed pieces per second), peak RSS, each prompt's answer and timings, how many
         answers equal the build host's (greedy: they should, on the same runtime version;
         the build host measures quality) and both runtime versions.
The device's temporary folder is removed when the remote run ends, whatever happens.

Example:
    distill-edge build --target arm64-q4 --config my.toml   # my.toml: [device] ssh = "pi@pi5"
    cat build/arm64-q4/report.md    # "## On the device" section
"""

from __future__ import annotations

import importlib.metadata
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from pipeline.cache import read_jsonl
from pipeline.config import BuildConfig
from pipeline.constrain import shipped_grammar
from pipeline.device import DeviceConfig, bench_on_device
from pipeline.measure.roles import Role
from pipeline.measure.search import shipped_row
from pipeline.outputs import ANSWERS, DEVICE, DeviceBench, DeviceSummary, read_bench, write_doc
from pipeline.runkit.bench import PROMPTS_FILE, RUNTIME_PACKAGES
from pipeline.runnable import Runnable, runnable_of, write_runnable
from pipeline.stage import Runtime, StageContext
from pipeline.targets import Target
from pipeline.tasks.inputs import EVAL_FILE, read_eval


class DeviceBenchSettings(Runnable):
    """The runnable folder's facts and the device it is timed on (its address keys the step)."""

    device: DeviceConfig | None
    warmup: int


def timing(results: list[dict[str, Any]]) -> dict[str, float]:
    """Mean time to first piece and total, and decode speed in streamed pieces per second
    after the first (llama.cpp and onnxruntime-genai stream one piece per token).

    >>> timing([{"ttft_s": 0.2, "decode_s": 1.0, "pieces": 11, "total_s": 1.2}])
    {'ttft_mean_s': 0.2, 'total_mean_s': 1.2, 'decode_tok_s': 10.0}
    """
    decode_s = sum(r["decode_s"] for r in results)
    pieces = sum(max(r["pieces"] - 1, 0) for r in results)
    return {"ttft_mean_s": round(statistics.fmean(r["ttft_s"] for r in results), 4),
            "total_mean_s": round(statistics.fmean(r["total_s"] for r in results), 4),
            "decode_tok_s": round(pieces / decode_s, 1) if decode_s > 0 else 0.0}


class BenchDeviceStage:
    name = "bench_device"
    libraries = ()
    resumable = False

    def settings(self, config: BuildConfig, target: Target) -> DeviceBenchSettings:
        grammar = shipped_grammar(config.task.spec, config.task.date_fields, target.constrained)[0]
        return DeviceBenchSettings(**runnable_of(target, config.bench.max_tokens, grammar),
                                   device=config.device, warmup=target.bench_warmup)

    def runtime(self, config: BuildConfig, target: Target) -> Runtime:
        return Runtime()

    def run(self, ctx: StageContext[DeviceBenchSettings]) -> DeviceSummary:
        s = ctx.settings
        if s.device is None:
            return DeviceSummary(enabled=False)
        eval_rows = read_eval(ctx.inputs["eval"] / EVAL_FILE)
        prompts = [row["prompt"] for row in eval_rows][: s.device.latency_prompts]
        ctx.log(f"timing the shipped artifact on {s.device.ssh} ({len(prompts)} prompts, over ssh)")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "kit"
            shipped = shipped_row(read_bench(ctx.inputs["bench"])["rows"])  # the search's pick
            assert shipped is not None  # the bench always measures the shipped artifact
            write_runnable(folder, s, export=ctx.inputs["export"], tokenizer=ctx.inputs["distill"],
                           artifact=shipped["file"])
            (folder / PROMPTS_FILE).write_text(json.dumps({"prompts": prompts, "warmup": s.warmup}))
            raw = bench_on_device(s.device, folder)
        host = [row.get(Role.DISTILLED) for row in read_jsonl(ctx.inputs["bench"] / ANSWERS)]
        same = sum(r["response"].strip() == (h or "").strip()
                   for r, h in zip(raw["results"], host, strict=False))
        doc = DeviceBench(enabled=True, address=s.device.ssh, device=raw["device"],
                          prompts=len(prompts), load_s=round(raw["load_s"], 3),
                          peak_rss_mb=round(raw["peak_rss_mb"], 1),
                          host_runtime_version=importlib.metadata.version(
                              RUNTIME_PACKAGES[s.runner][1]),
                          same_answers=same, results=raw["results"], **timing(raw["results"]))
        write_doc(ctx.out_dir / DEVICE, doc)
        facts = raw["device"]
        ctx.log(f"on {facts['cpu']} ({facts['machine']}, {facts['cores']} cores): decode "
                f"{doc.decode_tok_s} tok/s, first token {doc.ttft_mean_s} s; "
                f"{same}/{len(prompts)} answers as on this host")
        return DeviceSummary(enabled=True, address=s.device.ssh, decode_tok_s=doc.decode_tok_s)
