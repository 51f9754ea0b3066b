"""Whole tiny builds that take minutes (`make test-slow`, not `make test`; CI runs both).

1. kill -9 at a random point of every step: the next runs finish the build, and what they
build equals an uninterrupted build's. One build is started again and again: each run is
killed (SIGKILL to its process group, so a stage's child processes die with it, as when a
machine or container goes down) at a seeded random point of the first step that has not
been killed yet, a share of that step's uninterrupted run time; the run after it lets that
step finish. The steps with child processes or resumable state are first interrupted with
SIGINT (a terminal's Ctrl-C): that run must end with one line and exit 130. When every step
has been stopped, a last run completes the build. The uninterrupted build of the same config
is the reference: every step whose output is a pure function of its inputs (teacher rows,
filtered data, trained weights, exports) must have the same content digest; the measuring
steps (bench, judge, report, bundle) carry timings, so they must only be complete.
2. `--seeds 2` on the reference build: seed 0's chain from the cache, seed 1 trained and
scored, the median shipped and named in the report.

Example:
    .venv/bin/python -m pytest -q -s -m slow tests/test_whole_builds.py
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, THREADS, run_cli

pytestmark = pytest.mark.slow

# their outputs carry wall times and tokens/s: complete, but never byte-equal to another run's
MEASURING = {"bench_teacher", "bench_student", "bench_labels", "bench", "bench_device", "judge",
             "report", "bundle"}
CTRL_C = {"teacher", "teacher_logits", "distill", "export", "bench"}
RESUMABLE = {"teacher", "teacher_logits", "distill"}
SEED = 20261202
RUNNING = re.compile(r"\[(\w+)\] running")  # the runner's line as a step starts


def _config(root: Path, tiny_hf: Path) -> Path:
    from tests.test_e2e import PROFILE, TINY_CONFIG

    targets = root / "targets"
    targets.mkdir(exist_ok=True)
    (targets / "t-int4.toml").write_text(PROFILE.format(
        name="t-int4", quant="Q4_K_M", extra='calibration = "imatrix"', format="gguf",
        runtime="llama.cpp", threads=THREADS))
    cfg = root / "tiny.toml"
    cfg.write_text(TINY_CONFIG.format(student=tiny_hf, threads=THREADS))
    return cfg


def _args(cfg: Path, build: Path, *extra: str) -> list[str]:
    return ["build", "--config", str(cfg), "--target", "t-int4", "--build-dir", str(build), *extra]


def _env(cfg: Path) -> dict[str, str]:
    return {"DISTILL_EDGE_TARGETS": str(cfg.parent / "targets")}


def _start(cfg: Path, build: Path) -> subprocess.Popen[str]:
    exe = Path(sys.executable).with_name("distill-edge")
    return subprocess.Popen(
        [str(exe), *_args(cfg, build)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, cwd=ROOT, env={**os.environ, **_env(cfg)},
        start_new_session=True)  # its own process group: the kill takes its children too


def _run_until_stopped(cfg: Path, build: Path, pending: dict[str, list[int]],
                       durations: dict[str, float], rng: random.Random) -> tuple[str, int, float] | None:
    """One run: stopped with the next signal pending for the first step it runs that still
    has one, at a random share of that step's uninterrupted time (returns step, signal,
    seconds into it), or left to finish (returns None)."""
    proc = _start(cfg, build)
    lines: list[str] = []
    running: list[str] = []
    seen = threading.Event()

    started: list[str] = []  # every step this run has started, in order

    def read() -> None:  # a thread, so the pipe never fills while the test sleeps
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if m := RUNNING.search(line):
                started.append(m[1])
                if pending.get(m[1]) and not seen.is_set():
                    running.append(m[1])
                    seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while not seen.wait(0.05):
        if proc.poll() is not None:  # every step already stopped: it ran to the end
            reader.join()
            assert proc.returncode == 0, "".join(lines)[-3000:]
            return None
    step = running[0]
    sig, at = pending[step].pop(0), rng.uniform(0.05, 0.95) * durations[step]
    # the step may run faster than in the reference build: once the next step starts, the
    # signal goes at once (into that one), so it never arrives after the build has ended
    began, steps = time.perf_counter(), len(started)
    while time.perf_counter() - began < at and len(started) == steps:
        time.sleep(0.01)
    os.killpg(proc.pid, sig)  # the group, as a terminal's Ctrl-C or a container's kill
    proc.wait()
    reader.join()
    if sig == signal.SIGINT:  # one line, exit 130, whatever was running (children too)
        assert proc.returncode == 130 and "Traceback" not in "".join(lines), "".join(lines)[-3000:]
        assert lines[-1] == "distill-edge: error: interrupted\n", lines[-5:]
        # only the steps that resume from it keep their partial folder
        assert {p.parent.name for p in build.glob("cache/*/*.partial")} <= RESUMABLE
    # a short step can end before the signal: then it landed in a later one (reported)
    landed = [m[1] for line in lines if (m := RUNNING.search(line))]
    if landed[-1] != step:
        print(f"{step} ended before its signal, which landed in {landed[-1]}")
    return step, sig, at


def _build(cfg: Path, build: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*_args(cfg, build, *extra), env=_env(cfg))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, tiny_hf: Path) -> dict[str, Any]:
    """The uninterrupted build: its config, build folder, manifest and wall time."""
    root = tmp_path_factory.mktemp("whole")
    cfg = _config(root, tiny_hf)
    start = time.perf_counter()
    proc = _build(cfg, root / "ref")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"cfg": cfg, "build": root / "ref", "wall_s": time.perf_counter() - start,
            "manifest": json.loads((root / "ref" / "t-int4" / "manifest.json").read_text())}


def test_stopped_in_every_step_the_build_still_equals_an_uninterrupted_one(
        reference: dict[str, Any], tmp_path: Path) -> None:
    from pipeline.runner import PLAN

    cfg, start, ref_s = reference["cfg"], time.perf_counter(), reference["wall_s"]
    durations = {s["step"]: float(s["computed_wall_s"]) for s in reference["manifest"]["steps"]}
    rng = random.Random(SEED)
    # every step gets a kill -9; the steps with child processes or resumable state get a
    # Ctrl-C (SIGINT to the group) before it
    pending = {s.id: ([signal.SIGINT] if s.id in CTRL_C else []) + [signal.SIGKILL] for s in PLAN}
    stops = []
    build = tmp_path / "killed"
    while (stop := _run_until_stopped(cfg, build, pending, durations, rng)) is not None:
        stops.append(stop)
        assert len(stops) <= len(PLAN) + len(CTRL_C)
    print(f"reference build {ref_s:.0f} s; stopped build {time.perf_counter() - start:.0f} s"
          f" in {len(stops) + 1} runs; stops (step, signal, s into it): "
          + ", ".join(f"{step} {signal.Signals(sig).name} {at:.2f}" for step, sig, at in stops))
    assert not any(pending.values()), pending
    manifest = json.loads((build / "t-int4" / "manifest.json").read_text())
    got = {s["step"]: s["output_digest"] for s in manifest["steps"]}
    want = {s["step"]: s["output_digest"] for s in reference["manifest"]["steps"]}
    assert {k: v for k, v in got.items() if k not in MEASURING} == \
        {k: v for k, v in want.items() if k not in MEASURING}
    assert set(got) == set(want)
    report = json.loads((build / "t-int4" / "report.json").read_text())
    assert len(report["bench"]["rows"]) == len(json.loads(
        (reference["build"] / "t-int4" / "report.json").read_text())["bench"]["rows"])
    # nothing half-written left in the cache for a later run to trust
    assert not list((build / "cache").rglob("*.partial*"))


def test_several_seeds_ship_the_median_student(reference: dict[str, Any]) -> None:
    """`--seeds 2` on the reference build: seed 0's chain comes from the cache, seed 1 trains
    and is scored, the median (of two, the lower) ships and the report names both."""
    build = reference["build"]
    proc = _build(reference["cfg"], build, "--seeds", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((build / "t-int4" / "report.json").read_text())
    table = report["seeds"]["distill_runs"]
    assert [r["seed"] for r in table["runs"]] == [0, 1] and table["metric"] == "field_accuracy"
    values = {r["seed"]: r["value"] for r in table["runs"]}
    assert table["shipped"] == min(values, key=lambda s: (values[s], s))
    manifest = json.loads((build / "t-int4" / "manifest.json").read_text())
    distill = next(s for s in manifest["steps"] if s["step"] == "distill")
    meta = json.loads((Path(distill["path"]) / "_meta.json").read_text())
    assert meta["settings"]["seed"] == table["shipped"] == report["seeds"]["distill"]
    assert manifest["externals"]["seed_runs"]["path"].endswith(".json")
    assert "## Seeds" in (build / "t-int4" / "report.md").read_text()
    # the shipped student's fp32 row is the one its seed scored
    torch_row = next(r for r in report["bench"]["rows"] if r["role"] == "distilled_torch")
    assert torch_row["field_accuracy"] == values[table["shipped"]]
