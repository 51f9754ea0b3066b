"""One latency row measured twice: on a quiet machine, then beside a competing CPU load.

The row is the bench step's own loop (`pipeline.measure.bench.bench_rows`: the artifact in a
fresh process, the machine's load recorded around it, a contended row measured again up to
`--remeasure` times), so what it prints is what a report would show: decode tok/s, the
other processes' CPU share, steal, the spread of the fixed-length repeats and the ⚠ mark.
The load is `--burners` Python processes spinning for the whole measurement.

Example:
    .venv/bin/python -m benchmarks.contention --prompts 8 --burners 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pipeline.config import load_config
from pipeline.measure.bench import bench_rows
from pipeline.measure.roles import Role
from pipeline.models.weights import resolve_catalog_model
from pipeline.tasks import make_task
from pipeline.tasks.inputs import read_rows

FIELDS = ("decode_tok_s", "ttft_mean_s", "tg_tok_s", "tg_tok_s_p90", "other_cpu_pct",
          "steal_pct", "loadavg_1m", "contended")


def measure(model: Path, eval_rows: list[dict[str, Any]], remeasure: int, out: Path) -> dict[str, Any]:
    """The default task's student row for `model`, as the bench step measures it."""
    config = load_config(None)
    row = {"label": "SmolLM2-135M Q4_1", "role": Role.BASE, "model": model, "runtime": "llama_cpp",
           "prompt": config.task.student_prompt}
    out.mkdir(parents=True, exist_ok=True)
    result = bench_rows([row], eval_rows, out, make_task(config.task.spec), threads=2, n_ctx=1024,
                        max_tokens=48, synthetic={"pp": 64, "tg": 32, "repeats": 3},
                        remeasure=remeasure, log=lambda m: print(m, file=sys.stderr))
    return result["rows"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--burners", type=int, default=2)
    parser.add_argument("--remeasure", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = resolve_catalog_model("smollm2-135m-instruct-q4_1", Path(tmp) / "models")
        data = Path(__file__).resolve().parents[1] / "pipeline/tasks/data/extraction-eval.jsonl"
        eval_rows = read_rows(data)[: args.prompts]
        quiet = measure(model, eval_rows, args.remeasure, Path(tmp) / "quiet")
        burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                   for _ in range(args.burners)]
        try:
            loaded = measure(model, eval_rows, args.remeasure, Path(tmp) / "loaded")
        finally:
            for proc in burners:
                proc.kill()
    print("| run | " + " | ".join(FIELDS) + " |")
    print("|---|" + "---|" * len(FIELDS))
    for name, row in (("quiet", quiet), (f"{args.burners} spinning processes", loaded)):
        print(f"| {name} | " + " | ".join(json.dumps(row.get(k)) for k in FIELDS) + " |")


if __name__ == "__main__":
    main()
