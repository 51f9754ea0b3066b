"""One table of the builds' decisions: per target, what its report.json decided and why.

Reads `build/<target>/report.json` of every target built so far (nothing is run): the
decision, the shipped encoding and its real bits per weight, size, KL vs the fp32 student,
the primary metric with its 95 % interval, and each check's outcome and the prompts it was
decided on.

`--write docs/measurements.md` puts the table, with each build's machine and stage wall
times, between that page's `<!-- decisions:begin -->` / `<!-- decisions:end -->` markers.

Example:
    .venv/bin/python -m benchmarks.decisions --build-dir build > decisions.md
    .venv/bin/python -m benchmarks.decisions --write docs/measurements.md
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


BEGIN, END = "<!-- decisions:begin -->", "<!-- decisions:end -->"


def machines(build_dir: Path) -> str:
    """Each report's machine, training precision, date and stage wall times, one line each."""
    lines = []
    for path in sorted(build_dir.glob("*/report.json")):
        report = json.loads(path.read_text())
        env, walls = report.get("environment", {}), report.get("stage_wall_s", {})
        created = json.loads((path.parent / "manifest.json").read_text()).get("created", "?")
        trained = (report.get("training") or {}).get("precision", "?")
        lines.append(f"- `{report['target']}` ({created[:10]}): {env.get('cpu', '?')}, "
                     f"{env.get('cores', '?')} cores, flags {' '.join(env.get('cpu_flags', []))}; "
                     f"training {trained}; stage wall s: "
                     + ", ".join(f"{k} {v:.0f}" for k, v in walls.items() if v >= 1))
    return "\n".join(lines)


def write(page: Path, build_dir: Path) -> None:
    """Replace the text between the page's decisions markers with the table and machines."""
    text = page.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise SystemExit(f"{page}: needs one {BEGIN} and one {END}")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    body = (f"Written by `python -m benchmarks.decisions --write {page}` from "
            f"`{build_dir}/*/report.json`.\n\n{table(build_dir)}\n{machines(build_dir)}\n")
    page.write_text(f"{head}{BEGIN}\n{body}{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=Path("build"))
    parser.add_argument("--write", type=Path, help="a page with the decisions markers to fill")
    args = parser.parse_args()
    if args.write:
        write(args.write, args.build_dir)
    else:
        print(table(args.build_dir))


if __name__ == "__main__":
    main()
