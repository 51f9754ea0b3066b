"""The two maintained ONNX export paths, side by side on one student, same harness.

  builder: onnxruntime-genai's model builder (what export_onnx ships): fused
           GroupQueryAttention/rotary/SkipLayerNorm graph, KV cache managed by
           onnxruntime-genai, int4 written as MatMulNBits by the builder;
  optimum: optimum-onnx's `text-generation-with-past` export (the HF graph traced op by op),
           int4 by onnxruntime.quantization's MatMulNBitsQuantizer, run by a plain
           onnxruntime greedy loop (pipeline/measure/runtimes/onnx_plain.py).
Both int4 graphs use the same quantizer settings (RTN, symmetric, block 16, accuracy_level 4),
so what differs is the graph. optimum-onnx pins transformers<4.58, so its export runs in a
separate interpreter (--optimum-python); everything else runs here. Each artifact is measured
by `pipeline.measure.latency.bench_artifact` in a fresh process (metric, decode speed, KL vs the
fp32 torch student).

Example:
    python3 -m venv /tmp/optvenv && /tmp/optvenv/bin/pip install torch==2.13.0 optimum-onnx==0.1.0
    .venv/bin/python -m benchmarks.onnx_paths build/cache/distill/<key> \
        --optimum-python /tmp/optvenv/bin/python --out /tmp/onnx-paths
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

INT4 = {"block_size": 16, "accuracy_level": 4, "algo_config": "default"}  # RTN, symmetric


def export_optimum(python: str, hf_dir: Path, out: Path) -> None:
    """fp32 KV-cache export in optimum's interpreter, tokenizer files copied beside it."""
    cmd = [python, "-m", "optimum.commands.optimum_cli", "export", "onnx", "--model", str(hf_dir),
           "--task", "text-generation-with-past", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not (out / "model.onnx").is_file():
        raise SystemExit(f"optimum export failed: {(proc.stderr or proc.stdout)[-500:]}")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (hf_dir / name).is_file():
            shutil.copyfile(hf_dir / name, out / name)


def quantize_int4(src: Path, out: Path) -> None:
    """onnxruntime.quantization's MatMulNBits int4, the builder's settings."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(onnx.load(str(src / "model.onnx")), bits=4,
                                     block_size=INT4["block_size"], is_symmetric=True,
                                     accuracy_level=INT4["accuracy_level"])
    quantizer.process()
    out.mkdir(parents=True, exist_ok=True)
    quantizer.model.save_model_to_file(str(out / "model.onnx"), use_external_data_format=True)
    for f in src.iterdir():
        if f.suffix != ".onnx" and not f.name.startswith("model.onnx"):
            shutil.copyfile(f, out / f.name)


def build_all(hf_dir: Path, python: str, out: Path) -> dict[str, Path]:
    from pipeline.models import onnx_build

    arts = {"builder fp32": out / "builder-fp32", "builder int4": out / "builder-int4",
            "optimum fp32": out / "optimum-fp32", "optimum int4": out / "optimum-int4"}
    jobs = [onnx_build.job(hf_dir, arts[f"builder {p}"], p, "cpu", extra, out / "_cache")
            for p, extra in (("fp32", {}), ("int4", INT4)) if not arts[f"builder {p}"].is_dir()]
    if jobs:
        onnx_build.build_all(jobs)
    if not arts["optimum fp32"].is_dir():
        export_optimum(python, hf_dir, arts["optimum fp32"])
    if not arts["optimum int4"].is_dir():
        quantize_int4(arts["optimum fp32"], arts["optimum int4"])
    return arts


def measure(hf_dir: Path, arts: dict[str, Path], out: Path, rows: int) -> list[dict[str, Any]]:
    """The fp32 torch student (the reference) and every export, through the bench's row loop."""
    from pipeline.config import load_config
    from pipeline.measure.bench import bench_rows, score_texts
    from pipeline.tasks import make_task
    from pipeline.tasks.inputs import labelled_eval

    config = load_config(None).task  # the default task's eval split and student prompt
    task = make_task(config.spec)
    evals = labelled_eval(Path(str(config.eval_data)), task, config.columns)[:rows]
    table_rows = [{"label": label, "role": label, "model": model, "prompt": config.student_prompt,
                   "score": True, "reference": label == "torch fp32"}
                  for label, model in [("torch fp32", hf_dir), *arts.items()]]
    texts = score_texts(hf_dir, config.student_prompt, evals, 16)
    result = bench_rows(table_rows, evals, out, task, threads=2, n_ctx=1024, max_tokens=96,
                        synthetic={"pp": 128, "tg": 64, "repeats": 5}, texts=texts)
    return [{"artifact": r["label"], "size_mb": r["file_mb"], **r} for r in result["rows"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("student", type=Path, help="the distilled HF folder")
    parser.add_argument("--optimum-python", required=True, help="a python with optimum-onnx")
    parser.add_argument("--out", type=Path, default=Path("build/onnx-paths"))
    parser.add_argument("--rows", type=int, default=60, help="eval prompts")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table = measure(args.student, build_all(args.student, args.optimum_python, args.out), args.out,
                    args.rows)
    (args.out / "onnx_paths.json").write_text(json.dumps(table, indent=2) + "\n")
    from pipeline.config import load_config

    keys = ("artifact", "runtime", "size_mb", load_config(None).task.primary_metric, "kl_vs_reference",
            "decode_tok_s", "tg_tok_s", "pp_tok_s", "peak_rss_mb")
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in table:
        print("| " + " | ".join(str(row.get(k, "–")) for k in keys) + " |")


if __name__ == "__main__":
    main()
