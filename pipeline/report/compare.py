"""Compare two builds' reports side by side, artifact by artifact.

Example:
    distill-edge compare build/cpu-int4 build/cpu-int8
"""

from __future__ import annotations

from typing import Any

FIELDS = (("decode_tok_s", "{:.1f}"), ("file_mb", "{:.1f}"), ("peak_rss_mb", "{:.0f}"))


def compare_reports(a: dict[str, Any], b: dict[str, Any], name_a: str, name_b: str) -> str:
    """A Markdown table: for each artifact role, A, B and B - A of each headline number."""
    rows_a = {r["role"]: r for r in a["bench"]["rows"]}
    rows_b = {r["role"]: r for r in b["bench"]["rows"]}
    metric = a.get("task", {}).get("metric", "field_accuracy")
    fields = ((metric, "{:.3f}"), *FIELDS)
    header = ["role", "artifact A", "artifact B"]
    for key, _ in fields:
        header += [f"{key} A", f"{key} B", "Δ"]
    lines = [f"A = {name_a} ({a['target']}), B = {name_b} ({b['target']})", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for role in [*rows_a, *(r for r in rows_b if r not in rows_a)]:
        ra, rb = rows_a.get(role, {}), rows_b.get(role, {})
        cells = [role, ra.get("label", "–"), rb.get("label", "–")]
        for key, fmt in fields:
            va, vb = ra.get(key), rb.get(key)
            cells += [fmt.format(va) if va is not None else "–",
                      fmt.format(vb) if vb is not None else "–",
                      ("{:+" + fmt[2:]).format(vb - va) if va is not None and vb is not None else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    verdicts = [f"Verdict A: {a.get('verdict', {}).get('text', '–')}",
                f"Verdict B: {b.get('verdict', {}).get('text', '–')}"]
    return "\n".join([*lines, "", *verdicts])
