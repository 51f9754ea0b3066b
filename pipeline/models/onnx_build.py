"""Run the onnxruntime-genai model builder for several precisions in one child process.

The builder is a CLI (`python -m onnxruntime_genai.models.builder`); importing it (torch,
transformers, onnx, onnx_ir) takes ~10 s on a 2-core CPU while building a small model takes
~1-3 s, and an ONNX export needs two builds (the fp32 reference and the quantized target).
So one child imports the builder once and runs, per job, exactly what the CLI's `__main__`
runs: `parse_extra_options` then `create_model`.

Example:
    python -m pipeline.models.onnx_build '[{"input": "hf", "output": "onnx-fp32",
        "precision": "fp32", "provider": "cpu", "cache_dir": "c", "extra": {}}]'
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def job(hf_dir: Path, out_dir: Path, precision: str, provider: str, extra: dict[str, Any],
        cache_dir: Path) -> dict[str, Any]:
    """One run of the builder: what its CLI takes as -i, -o, -p, -e, -c and --extra_options."""
    return {"input": str(hf_dir), "output": str(out_dir), "precision": precision,
            "provider": provider, "cache_dir": str(cache_dir), "extra": extra}


def build_all(jobs: list[dict[str, Any]]) -> None:
    """Each job: input, output, precision, provider, cache_dir, extra (builder KEY=VALUE
    options). Runs the builder in a child process; RuntimeError naming the failing job."""
    proc = subprocess.run([sys.executable, "-m", "pipeline.models.onnx_build", json.dumps(jobs)],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    missing = [j for j in jobs if not (Path(j["output"]) / "genai_config.json").is_file()]
    if proc.returncode != 0 or missing:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        failed = missing[0]["precision"] if missing else "?"
        raise RuntimeError(f"onnxruntime-genai builder ({failed}) failed: {last[0]}")


def _main(jobs: list[dict[str, Any]]) -> None:
    from onnxruntime_genai.models import builder

    for spec in jobs:
        # the CLI's __main__, job by job (model_name None: the model comes from `input`)
        where = (spec["input"], spec["output"], spec["precision"], spec["provider"],
                 spec["cache_dir"])
        options = builder.parse_extra_options(
            None, *where, [f"{k}={v}" for k, v in spec["extra"].items()])
        builder.create_model(None, *where, **options)


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]))
