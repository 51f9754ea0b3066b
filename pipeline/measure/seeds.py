"""Several training seeds: which student ships, and how far the seeds spread.

Retraining the same config with another seed moves a small eval set's metric by a few
points; `[distill] seeds = N` (or `distill-edge build --seeds N`) trains N students, scores
each as the fp32 student (the bench_student step, each seed's chain cached on its own) and
ships the median one, so the report's rows describe a typical seed, not a lucky one.

Example:
    >>> from pipeline.measure.seeds import seed_table
    >>> runs = [{"seed": 0, "value": 0.9}, {"seed": 1, "value": 0.95}, {"seed": 2, "value": 0.8}]
    >>> t = seed_table(runs, "field_accuracy")
    >>> t["shipped"], t["spread"]
    (0, 0.15)
"""

from __future__ import annotations

import statistics
from typing import Any


def seed_table(runs: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """runs: [{"seed", "value"}] -> the median seed (of an even count, the lower of the middle
    two; equal values, the lower seed) and the spread (max - min, sample sd)."""
    ordered = sorted(runs, key=lambda r: (r["value"], r["seed"]))
    values = [float(r["value"]) for r in runs]
    return {"metric": metric, "runs": runs, "shipped": ordered[(len(ordered) - 1) // 2]["seed"],
            "min": min(values), "max": max(values), "spread": round(max(values) - min(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}


def seed_line(table: dict[str, Any], label: str = "distilled fp32 (torch)") -> str:
    """The report's sentence: every seed's value, the spread, the shipped seed."""
    metric = table["metric"].replace("_", " ")
    values = ", ".join(f"seed {r['seed']} {r['value']:.3f}" for r in table["runs"])
    return (f"{len(table['runs'])} students trained with different seeds; {label} {metric}: "
            f"{values} — spread (max − min) {table['spread']:.3f}, sd {table['sd']:.3f}. "
            f"Shipped: seed {table['shipped']}, the median; every other figure in this report "
            "is that student's.")
