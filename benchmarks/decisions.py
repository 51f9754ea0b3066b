"""One table of the builds' decisions: per target, what its report.json decided and why.

Reads `build/<target>/report.json` of every target built so far (nothing is run): the
decision, the shipped encoding and its real bits per weight, size, KL vs the fp32 student,
the primary metric with its 95 % interval, and each check's outcome and the prompts it was
decided on.

Example:
    .venv/bin/python -m benchmarks.decisions --build-dir build > decisions.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pipeline.measure.roles import Role

HEADER = ("| target | decision | exit | shipped | bpw | size MB | KL vs fp32 | {metric} (95% interval) "
          "| checks |")


def _row(report: dict[str, Any]) -> str:
    decision, metric = report["decision"], report["task"]["metric"]
    shipped = next(r for r in report["bench"]["rows"] if r["role"] == Role.DISTILLED)
    mix = report.get("quant_mix") or {}
    ci = shipped.get("ci") or [float("nan")] * 2
    kl = shipped.get("kl_vs_reference")
    checks = "; ".join(f"{c['check']} {c['outcome']}" + (f" ({c['prompts']} prompts)"
                                                          if c.get("prompts") else "")
                       for c in decision["checks"])
    cells = [report["target"], decision["outcome"] + (" → ship" if decision["ship"] else " → no ship"),
             str(decision["exit_code"]), shipped["label"], str(mix.get("bits_per_weight", "–")),
             f"{shipped.get('file_mb', 0):.1f}", "–" if kl is None else f"{kl:.4f}",
             f"{shipped[metric]:.3f} ({ci[0]:.3f}–{ci[1]:.3f})", checks]
    return "| " + " | ".join(cells) + " |"


def table(build_dir: Path) -> str:
    reports = [json.loads(p.read_text()) for p in sorted(build_dir.glob("*/report.json"))]
    reports = [r for r in reports if "decision" in r]  # older reports have no decision
    if not reports:
        return "no report.json with a decision under " + str(build_dir)
    metric = reports[0]["task"]["metric"].replace("_", " ")
    lines = [HEADER.format(metric=metric), "|" + "---|" * 9]
    return "\n".join(lines + [_row(r) for r in reports]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=Path("build"))
    print(table(parser.parse_args().build_dir))


if __name__ == "__main__":
    main()
