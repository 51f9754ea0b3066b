"""End to end: build, rebuild from cache, a second (ONNX) target, gate, bundles, bad input.

SmolLM2-135M (the smallest real model) is the teacher on a handful of prompts; the student is
the session's tiny 2-layer llama with SmolLM2's tokenizer (tests/conftest.py), so every stage
runs for real in seconds. This checks the mechanics (every stage, caching, publishing, the
report), not the default build's quality.
Test profiles live in a temp targets folder (DISTILL_EDGE_TARGETS) so the real profiles'
quality gates do not judge a student trained for one step.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from tests.conftest import THREADS, run_cli

pytestmark = pytest.mark.e2e

TINY_CONFIG = """
[teacher]
model = "smollm2-135m-instruct-q4_1"
max_tokens = 64
threads = {threads}
[student]
path = "{student}"
[task]
max_train_rows = 12  # SmolLM2 as teacher: about 1 in 3 answers passes the validator
max_eval_rows = 3
[filter]
checks = ["length", "refusal", "validator"]  # SmolLM2 as teacher rarely matches references
[distill]
epochs = 1
batch_size = 4
learning_rate = 2e-4  # one step must move the tiny student off the base (KL checks)
[gate]
require_goal = false  # a student trained for one step: mechanics, not the [goal] bar
[bench]
max_tokens = 48
score_rows = 2
repeats = 1     # the fixed-length tests run once, short: mechanics, not numbers
pp_tokens = 32
tg_tokens = 16
remeasure = 0   # tests may run side by side: rows are marked, never measured twice
labels_row = true  # the preset's train rows carry references: the fine-tuned-on-labels row
"""
PROFILE = """name = "{name}"
description = "e2e test profile"
format = "{format}"
quant = "{quant}"
runtime = "{runtime}"
threads = {threads}
n_ctx = 1024
max_kl = 1000.0  # a gate that judges mechanics only: an empty gate is refused
{extra}
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_hf: Path) -> dict[str, object]:
    root = tmp_path_factory.mktemp("e2e")
    targets = root / "targets"
    targets.mkdir()
    for name, quant, extra in (("t-int4", "Q4_K_M", 'calibration = "imatrix"'),
                               # t-int4 with an unreachable gate: its export and bench come
                               # from the cache, only the report and the (absent) bundle run
                               ("t-gate", "Q4_K_M", 'calibration = "imatrix"\nmin_quality = 1.0'),
                               # t-int4's twin for the device build: only its device step,
                               # report and bundle run
                               ("t-dev", "Q4_K_M", 'calibration = "imatrix"'),
                               # an encoding search: Q4_0 is the smallest, and passes
                               ("t-search", "Q4_K_M",
                                'calibration = "imatrix"\nencodings = ["Q8_0", "Q4_0"]'),
                               ("t-onnx", "int4", ""),
                               ("t-openvino", "int4",
                                'calibration = "awq"\nblock_size = 16\nint4_ratio = 0.8')):
        fmt, runtime = {"t-onnx": ("onnx", "onnxruntime"),
                        "t-openvino": ("openvino", "openvino")}.get(name, ("gguf", "llama.cpp"))
        (targets / f"{name}.toml").write_text(PROFILE.format(
            name=name, quant=quant, extra=extra, format=fmt, runtime=runtime, threads=THREADS))
    cfg = root / "tiny.toml"
    cfg.write_text(TINY_CONFIG.format(student=tiny_hf, threads=THREADS))
    ctx = {"cfg": cfg, "build": root / "build", "env": {"DISTILL_EDGE_TARGETS": str(targets)}}
    proc = _build(ctx, "t-int4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return ctx


def _build(ctx: dict, target: str, *extra: str):  # type: ignore[no-untyped-def]
    return run_cli("build", "--config", str(ctx["cfg"]), "--target", target, "--build-dir",
                   str(ctx["build"]), *extra, env=ctx["env"])


def _ensure(ctx: dict, target: str) -> None:
    """Build `target` once in the module's build folder (whichever test needs it first)."""
    if not (ctx["build"] / target / "manifest.json").is_file():
        proc = _build(ctx, target)
        assert proc.returncode == 0, proc.stderr[-2000:]


def _steps(build: Path, target: str) -> dict[str, bool]:
    manifest = json.loads((build / target / "manifest.json").read_text())
    return {s["step"]: s["cache_hit"] for s in manifest["steps"]}


def test_first_build_publishes_everything(built: dict) -> None:
    out = built["build"] / "t-int4"
    names = {p.name for p in out.iterdir()}
    assert {"model.Q4_K_M.gguf", "prompt_format.json", "report.md", "report.json", "report.html",
            "manifest.json", "bundle"} <= names
    assert not any(_steps(built["build"], "t-int4").values())
    report = json.loads((out / "report.json").read_text())
    roles = [r["role"] for r in report["bench"]["rows"]]
    assert roles == ["teacher", "base_fp", "base", "base_fewshot", "labels_torch", "distilled_torch",
                     "distilled_fp", "distilled", "distilled_fp_grammar", "distilled_grammar"]
    # the preset's 12 labelled train rows: the same student fine-tuned on them alone, compared
    labels = report["labels"]
    assert labels["prompts"] == 3 and labels["ci"][0] <= labels["delta"] <= labels["ci"][1]
    assert "## Fine-tuned on your labels" in (out / "report.md").read_text()
    for role in ("distilled_fp_grammar", "distilled_grammar"):  # under the task's grammar:
        row = next(r for r in report["bench"]["rows"] if r["role"] == role)  # every answer
        assert row["grammar"] and row["valid"] >= 1 - row["truncated"]  # not cut off parses
    assert "## Constrained decoding" in (out / "report.md").read_text()
    for row in report["bench"]["rows"]:
        assert row["decode_tok_s"] > 0 and row["file_mb"] > 0 and 0 <= row["field_accuracy"] <= 1
    assert report["verdict"]["case"] in ("skip_distillation", "run_teacher", "ship_student")
    assert report["decision"]["ship"] and report["verdict"]["text"].endswith(
        report["decision"]["sentence"])
    assert [s["step"] for s in report["attribution"]] == ["quantize base", "distill", "export",
                                                         "quantize"]
    by_role = {r["role"]: r for r in report["bench"]["rows"]}
    assert by_role["distilled_torch"]["runtime"] == "torch"
    assert "perplexity" not in by_role["teacher"]  # other prompt: not scored
    assert "kl_vs_reference" not in by_role["distilled_torch"]  # it is the reference
    # the F16 export is the fp32 student to rounding; the undistilled base is not
    assert by_role["distilled_fp"]["kl_vs_reference"] < 0.01
    assert by_role["base_fp"]["kl_vs_reference"] > 10 * by_role["distilled_fp"]["kl_vs_reference"]
    manifest = json.loads((out / "manifest.json").read_text())
    export = next(s for s in manifest["steps"] if s["step"] == "export")
    from pipeline.codehash import stage_code
    from pipeline.stages import REGISTRY
    assert export["code"] == stage_code(REGISTRY["export"])  # keyed by the code it ran
    gguf = next(f for f in export["files"] if f["path"] == "model.Q4_K_M.gguf")
    assert len(gguf["sha256"]) == 64 and gguf["bytes"] == (out / "model.Q4_K_M.gguf").stat().st_size
    # calibrated on the task's kept rows: every matmul of the 2-layer student (7 per block,
    # and the output head) has its column stats
    imatrix = json.loads((Path(export["path"]) / "imatrix.json").read_text())
    assert imatrix["rows"] >= 1 and len(imatrix["tensors"]) == 2 * 7 + 1
    assert re.search(r"\| distilled Q4_K_M( ⚠)? \|", (out / "report.md").read_text())


def test_a_device_build_times_the_shipped_artifact_there(built: dict, sshd: dict,
                                                         tmp_path: Path) -> None:
    """[device] names an sshd on loopback (the test's own, throwaway keys): the build streams
    the shipped artifact there, times it with the bundle's own code, and the report says
    what the device is and how fast it answered — the same answers as on the build host."""
    import sys

    cfg = tmp_path / "device.toml"
    cfg.write_text(built["cfg"].read_text() + (
        f'[device]\nssh = "{sshd["address"]}"\nport = {sshd["port"]}\n'
        f'identity_file = "{sshd["identity_file"]}"\nknown_hosts = "{sshd["known_hosts"]}"\n'
        f'python = "{sys.executable}"\n'))
    proc = run_cli("build", "--config", str(cfg), "--target", "t-dev", "--build-dir",
                   str(built["build"]), env=built["env"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    steps = _steps(built["build"], "t-dev")
    assert steps["bench"] and not steps["bench_device"]  # only the device step is new
    out = built["build"] / "t-dev"
    device = json.loads((out / "report.json").read_text())["device"]
    assert device["address"] == sshd["address"] and device["prompts"] == 3  # every eval prompt
    assert device["device"]["runtime"] == "llama-cpp-python" and device["decode_tok_s"] > 0
    assert device["same_answers"] == 3  # greedy, same runtime: the build host's answers
    md = (out / "report.md").read_text()
    assert "## On the device" in md and f"Device `{sshd['address']}`" in md
    assert (out / "bundle" / "run.py").is_file()


def test_the_encoding_search_ships_the_smallest_type_that_passes(built: dict) -> None:
    """t-search lists Q8_0 and Q4_0 beside its Q4_K_M: the bench tries them smallest-first by
    the written files' bits per weight (Q4_0 the smallest even on the tiny model, whose
    F16 embeddings dominate), Q4_0 passes the decision at once, so it is the shipped
    row, the report's search table and the bundle's file."""
    _ensure(built, "t-search")
    out = built["build"] / "t-search"
    report = json.loads((out / "report.json").read_text())
    search = report["bench"]["search"]
    assert search["shipped"] == "Q4_0" and [c["quant"] for c in search["candidates"]] == ["Q4_0"]
    tried = search["candidates"][0]
    assert tried["outcome"] == "pass" and tried["bpw"] > 0 and tried["kl"] is not None
    shipped = next(r for r in report["bench"]["rows"] if r["role"] == "distilled")
    assert shipped["file"] == "model.Q4_0.gguf" and shipped["label"].startswith("distilled Q4_0")
    assert report["decision"]["ship"] and report["quant_mix"]["bits_per_weight"] == tried["bpw"]
    assert "## Encodings tried" in (out / "report.md").read_text()
    names = {p.name for p in (out / "bundle").iterdir()}
    assert "model.Q4_0.gguf" in names and "model.Q4_K_M.gguf" not in names
    gen = json.loads((out / "bundle" / "generation.json").read_text())
    assert gen["model"] == "model.Q4_0.gguf"


def test_html_report_embeds_its_plots(built: dict) -> None:
    page = (built["build"] / "t-int4" / "report.html").read_text()
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert {alt for alt, _ in images} == {"Quality vs size", "Decode speed", "Training loss",
                                          "Teacher data"}
    for _, data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<table>" in page and "Verdict" in page and "http" not in page.split("<body>")[1]


def test_published_student_answers_with_its_prompt_format(built: dict) -> None:
    from pipeline.generation.llm import ChatRunner, open_gguf

    out = built["build"] / "t-int4"
    fmt = json.loads((out / "prompt_format.json").read_text())
    runner = ChatRunner(open_gguf(out / "model.Q4_K_M.gguf", n_ctx=512, threads=THREADS))
    gen = runner.chat(fmt["system"], fmt["user_template"].format(prompt="Ann Lee wants 2 lamps"), 16)
    assert gen.completion_tokens > 0


def test_rebuild_is_all_cache_hits(built: dict) -> None:
    proc = _build(built, "t-int4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(_steps(built["build"], "t-int4").values())


def test_onnx_target_reuses_the_student_and_checks_parity(built: dict) -> None:
    """A second target, here an ONNX profile: the same student from the cache, exported by
    the onnxruntime-genai builder, benchmarked on onnxruntime, held to the fp32 student; the
    folder is published and loads alone. (The GGUF Q8_0 path: tests/test_export.py.)"""
    _ensure(built, "t-onnx")
    hits = _steps(built["build"], "t-onnx")
    assert all(hits[s] for s in ("teacher", "filter", "student_base", "distill", "bench_teacher",
                                 "bench_student"))
    assert not any(hits[s] for s in ("export_base", "export", "bench", "report", "bundle"))
    out = built["build"] / "t-onnx"
    assert (out / "onnx-int4" / "genai_config.json").is_file()
    rows = {r["role"]: r for r in json.loads((out / "report.json").read_text())["bench"]["rows"]}
    assert rows["distilled"]["label"] == "distilled int4 ONNX"
    assert rows["distilled"]["runtime"] == rows["distilled_fp"]["runtime"] == "onnxruntime"
    assert rows["distilled_fp"]["kl_vs_reference"] < 0.01  # fp32 ONNX = the torch student
    assert rows["distilled"]["kl_vs_reference"] < 1.0 and rows["distilled"]["decode_tok_s"] > 0
    import onnxruntime_genai as og

    og.Model(str(out / "onnx-int4"))


def test_openvino_target_exports_benchmarks_and_states_its_weight_mix(built: dict) -> None:
    """An OpenVINO profile: the same student exported by transformers' OpenVINO exporter
    with NNCF int4 weights (data-aware: AWQ on the task's kept rows), run by openvino-genai,
    held to the fp32 student; the report states the weight types the IR really holds."""
    _ensure(built, "t-openvino")
    hits = _steps(built["build"], "t-openvino")
    assert hits["distill"] and hits["bench_student"] and not hits["export"]
    out = built["build"] / "t-openvino"
    assert (out / "openvino-int4" / "openvino_model.xml").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    export = Path(next(s["path"] for s in manifest["steps"] if s["step"] == "export"))
    calibration = json.loads((export / "calibration.json").read_text())  # AWQ on the kept rows
    assert calibration["rows"] >= 1 and calibration["tokens"] > calibration["rows"]
    report = json.loads((out / "report.json").read_text())
    rows = {r["role"]: r for r in report["bench"]["rows"]}
    assert rows["distilled"]["label"] == "distilled int4 OpenVINO"
    assert rows["distilled"]["runtime"] == rows["distilled_fp"]["runtime"] == "openvino"
    assert rows["distilled_fp"]["kl_vs_reference"] < 0.01  # fp32 IR = the torch student
    assert rows["distilled"]["kl_vs_reference"] < 1.0 and rows["distilled"]["decode_tok_s"] > 0
    mix = report["quant_mix"]  # int4 layers; the tied embedding (most of this tiny model) int8
    assert {"u4", "u8"} <= set(mix["types"]) and mix["requested_type"] == "u4"
    # int4_ratio = 0.8: besides the embedding, the most sensitive layers stay int8
    assert mix["types"]["u8"]["tensors"] > 1
    assert "bits per weight (scales not counted)" in (out / "report.md").read_text()


def test_an_openvino_artifact_decodes_under_the_grammar(built: dict, tmp_path: Path) -> None:
    """openvino-genai takes the task grammar through its structured output (xgrammar): the
    random tiny int4 IR copies spans and writes parsing answers in the bench, and a
    constrained OpenVINO bundle answers with a label."""
    import shutil

    from pipeline.constrain import grammar_for
    from pipeline.measure.latency import bench_artifact
    from pipeline.prompts import ChatPrompt
    from pipeline.runkit import run as runkit_run
    from pipeline.runkit.grammar import message_spans
    from pipeline.tasks.base import TaskSpec

    _ensure(built, "t-openvino")
    folder = built["build"] / "t-openvino" / "openvino-int4"
    schema = {"type": "object", "properties": {"who": {"type": "string"}, "n": {
        "type": "integer", "minimum": 0, "maximum": 9}}, "required": ["who", "n"],
        "additionalProperties": False}
    grammar = grammar_for(TaskSpec(name="t", kind="json", json_schema=schema, copy_fields=("who",)))
    prompts = ["Ann Lee wants 2 lamps", "Ngozi Eze - 2 fans - Enugu"]
    held = bench_artifact(folder, ChatPrompt(system="Extract."), prompts, threads=THREADS,
                          n_ctx=256, max_tokens=40, warmup=0, runtime="openvino", grammar=grammar)
    for prompt, result in zip(prompts, held["results"], strict=True):
        # xgrammar allows JSON's optional whitespace (llguidance's is off), which this random
        # model may fill max_tokens with: the answer starts as the schema says, a copied span
        who = re.match(r'\{\s*"who"\s*:\s*"([^"]*)"', result["response"])
        assert who is not None and who.group(1) in message_spans(prompt), result["response"]
    bundle = shutil.copytree(folder, tmp_path / "bundle")
    labels = ("billing", "shipping", "other")
    (bundle / "grammar.json").write_text(grammar_for(TaskSpec(name="t", kind="label", labels=labels)))
    gen = {"format": "openvino", "runner": "openvino", "model": ".", "system": "Route it.",
           "user_template": "{prompt}", "max_tokens": 16, "threads": 1, "grammar": "grammar.json"}
    (bundle / "generation.json").write_text(json.dumps(gen))
    assert runkit_run.answer(bundle, "my parcel is late") in labels


def test_failing_gate_exits_3_with_the_report_written(built: dict) -> None:
    proc = _build(built, "t-gate")
    assert proc.returncode == 3, proc.stderr[-2000:]
    hits = _steps(built["build"], "t-gate")
    assert hits["export"] and hits["bench"] and not hits["report"]  # the gate is the report's
    assert "Not shipped" in proc.stderr and "minimum 1.0" in proc.stderr
    report = json.loads((built["build"] / "t-gate" / "report.json").read_text())
    assert report["decision"]["ship"] is False and report["decision"]["exit_code"] == 3
    assert report["verdict"]["text"].endswith(report["decision"]["sentence"])
    assert (built["build"] / "t-gate" / "report.html").is_file()
    assert not (built["build"] / "t-gate" / "bundle").exists()  # nothing deployable


def _bench_answer(build: Path, target: str) -> tuple[str, str]:
    """The first eval prompt and the shipped artifact's answer to it in the bench."""
    manifest = json.loads((build / target / "manifest.json").read_text())
    bench = Path(next(s["path"] for s in manifest["steps"] if s["step"] == "bench"))
    first = json.loads((bench / "answers.jsonl").read_text().splitlines()[0])
    evals = Path(next(s["path"] for s in manifest["steps"] if s["step"] == "eval_set")) / "eval.jsonl"
    prompt = next(json.loads(x)["prompt"] for x in evals.read_text().splitlines()
                  if json.loads(x)["id"] == first["id"])
    return prompt, first["distilled"]


@pytest.mark.parametrize("target", ["t-int4", "t-onnx", "t-openvino"])
def test_bundle_answers_alone_from_a_fresh_process(built: dict, target: str,
                                                   tmp_path: Path) -> None:
    """The bundle, copied away from the build, answers from a fresh `python run.py` with only
    its own folder — the same answer the bench measured for that artifact."""
    import shutil
    import subprocess
    import sys

    _ensure(built, target)
    bundle = shutil.copytree(built["build"] / target / "bundle", tmp_path / "moved")
    names = {p.name for p in bundle.iterdir()}
    assert {"run.py", "runkit", "generation.json", "README.md", "tokenizer.json"} <= names
    expected = {"t-int4": {"model.Q4_K_M.gguf", "Modelfile"},
                "t-onnx": {"genai_config.json", "model.onnx"},
                "t-openvino": {"openvino_model.xml", "openvino_tokenizer.xml"}}[target]
    assert expected <= names, names
    prompt, bench_answer = _bench_answer(built["build"], target)
    proc = subprocess.run([sys.executable, "-I", "run.py", prompt], cwd=bundle,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == bench_answer.strip()
    via_cli = run_cli("run", str(bundle), prompt)
    assert via_cli.returncode == 0 and via_cli.stdout.strip() == bench_answer.strip()
    card = (bundle / "README.md").read_text()
    assert "## Lineage" in card and "| distilled " in card and "Decision: Shipped" in card


def test_serve_answers_like_run_py(built: dict, tmp_path: Path) -> None:
    """`distill-edge serve`: llama-cpp-python's OpenAI-compatible server on a free loopback
    port; a plain HTTP client sends only the task text and gets run.py's answer."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    bundle = built["build"] / "t-int4" / "bundle"
    prompt, bench_answer = _bench_answer(built["build"], "t-int4")
    server = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", str(bundle), "--port",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, **built["env"]})
    try:
        url, deadline = f"http://127.0.0.1:{port}/v1", time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                time.sleep(0.3)
        reply = httpx.post(f"{url}/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": prompt}], "temperature": 0, "top_k": 1,
            "repeat_penalty": 1.0, "max_tokens": 48}).json()
        assert reply["choices"][0]["message"]["content"].strip() == bench_answer.strip()
    finally:
        server.terminate()
        server.wait(timeout=30)
    onnx = tmp_path / "onnx"
    onnx.mkdir()
    (onnx / "generation.json").write_text('{"format": "onnx", "model": "m", "system": "s", '
                                          '"user_template": "{prompt}", "max_tokens": 8}')
    proc = run_cli("serve", str(onnx))
    assert proc.returncode == 2 and "not supported yet" in proc.stderr


def test_run_rejects_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    proc = run_cli("run", str(tmp_path), "hello")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"distill-edge: error: {tmp_path} is not a distill-edge bundle: "
                                   "no generation.json (give a build/<target>/bundle folder)")


def test_report_and_compare_commands(built: dict) -> None:
    out = built["build"] / "t-int4"
    (out / "report.md").unlink()
    proc = run_cli("report", str(out))
    assert proc.returncode == 0 and (out / "report.md").is_file()
    _ensure(built, "t-onnx")
    proc = run_cli("compare", str(out), str(built["build"] / "t-onnx"))
    assert proc.returncode == 0, proc.stderr
    assert "| distilled |" in proc.stdout and "Verdict A:" in proc.stdout


def test_empty_prompt_file_fails_cleanly(built: dict, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    before = sorted(p.name for p in built["build"].rglob("*"))
    proc = _build(built, "t-int4", "--train-data", str(empty))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"distill-edge: error: train data {empty} has no rows: give " \
        "JSONL (.jsonl), CSV (.csv), Parquet (.parquet) or a datasets save_to_disk folder with " \
        "one prompt per row"
    assert sorted(p.name for p in built["build"].rglob("*")) == before


def test_missing_model_file_fails_cleanly(tmp_path: Path, tiny_hf: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY_CONFIG.format(student=tiny_hf, threads=THREADS).replace(
        'model = "smollm2-135m-instruct-q4_1"\nmax_tokens', f'path = "{tmp_path}/gone.gguf"\nmax_tokens'))
    proc = run_cli("build", "--config", str(cfg), "--build-dir", str(tmp_path / "b"))
    assert proc.returncode == 2
    assert "model path not found" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()

