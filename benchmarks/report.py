"""Render the build report (Markdown + JSON) from stage outputs and their metadata.

Example:
    python -c "from benchmarks.report import render_markdown; \
        print(render_markdown({'target': 'cpu-int4', 'bench': {'rows': []}}))"
"""

from __future__ import annotations

import os
import platform
from typing import Any

COLUMNS = [  # (header, key, format) — the table is data, not code
    ("artifact", "label", "{}"),
    ("size MB", "file_mb", "{:.1f}"),
    ("valid JSON", "valid", "{:.2f}"),
    ("field acc", "field_accuracy", "{:.3f}"),
    ("exact", "exact", "{:.3f}"),
    ("prompt tok", "mean_prompt_tokens", "{:.0f}"),
    ("TTFT ms", "ttft_mean_s", "{:.0f}"),
    ("prefill tok/s", "prefill_tok_s", "{:.0f}"),
    ("decode tok/s", "decode_tok_s", "{:.1f}"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
]


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else platform's guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict[str, Any]:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset (OpenMP default)")}


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return "–"
    if key == "ttft_mean_s":
        value = value * 1000
    return fmt.format(value)


def summary_line(rows: list[dict[str, Any]]) -> str:
    """One sentence comparing the distilled quantized student with the teacher and the base."""
    by_role = {r["role"]: r for r in rows}
    student, teacher, base = by_role.get("distilled"), by_role.get("teacher"), by_role.get("base")
    if not student:
        return "No distilled artifact was benchmarked."
    parts = [f"The distilled {student['label'].split()[-1]} student scores field accuracy "
             f"{student['field_accuracy']:.3f}"]
    if base:
        parts.append(f"vs {base['field_accuracy']:.3f} for the undistilled base")
    if teacher:
        speed = student["decode_tok_s"] / teacher["decode_tok_s"] if teacher["decode_tok_s"] else 0
        parts.append(f"and {teacher['field_accuracy']:.3f} for the teacher, decoding "
                     f"{speed:.1f}× faster than the teacher at "
                     f"{student['file_mb'] / teacher['file_mb'] * 100:.0f}% of its size")
    return " ".join(parts) + "."


def render_markdown(report: dict[str, Any]) -> str:
    """The human report. Every number comes from `report` (the same data as report.json)."""
    rows = report["bench"]["rows"]
    lines = [f"# distill-edge report — target `{report['target']}`", "",
             summary_line(rows), "", "| " + " | ".join(h for h, _, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r, k, f) for _, k, f in COLUMNS) + " |" for r in rows]
    lines += ["", f"Eval prompts: {report['bench'].get('eval_rows')}, threads: "
              f"{report['bench'].get('threads')}, greedy decoding. Field accuracy = share of the "
              "5 fields (name, item, quantity, city, date) equal to the reference."]
    if data := report.get("data"):
        lines += ["", "## Teacher data", "",
                  f"Teacher rows: {data['rows_in']}, kept {data['kept']}, dropped {data['dropped']} "
                  f"({', '.join(f'{k}: {v}' for k, v in data['drops_by_reason'].items()) or 'none'}).",
                  f"Kept rows' field accuracy vs the generator's references (diagnostic only, "
                  f"never trained on): {data.get('kept_teacher_field_accuracy')}."]
    if train := report.get("training"):
        lines += ["", "## Training", "",
                  f"{train['examples']} examples, {train['steps']} steps, loss {train['first_loss']} → "
                  f"{train['final_loss']}, {train['train_tokens_per_s']} tokens/s."]
    lines += ["", "## Stage wall times (when computed)", "", "| stage | wall s |", "|---|---|"]
    lines += [f"| {name} | {wall:.1f} |" for name, wall in report.get("stage_wall_s", {}).items()]
    env = report.get("environment", {})
    lines += ["", "## Environment", "", f"CPU: {env.get('cpu')}, cores: {env.get('cores')}, "
              f"OMP_WAIT_POLICY: {env.get('omp_wait_policy')}.",
              "Libraries: " + ", ".join(f"{k} {v}" for k, v in report.get("libraries", {}).items()),
              ""]
    return "\n".join(lines)
