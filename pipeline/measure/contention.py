"""Was the machine quiet while a row was measured? Other processes' CPU share and steal.

A latency row taken while something else runs is not the artifact's speed. Around each
measured child process we read the machine's CPU times (psutil) and our own processes'
CPU time (rusage of this process and its children): whatever the machine spent beyond
ours, over the row's wall time and the machine's cores, is other processes' share; the
hypervisor's steal is read beside it. A row above `CONTENDED_SHARE` (or `STEAL_SHARE`) is
marked, re-measured by the bench, and the mark stays in the report if it persists.

Example:
    >>> from pipeline.measure.contention import load_between, snapshot
    >>> before = snapshot()
    >>> sorted(load_between(before, snapshot()))
    ['contended', 'loadavg_1m', 'other_cpu_pct', 'steal_pct']
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any

CONTENDED_SHARE = 0.15  # other processes used more than 15 % of the machine's CPU time
STEAL_SHARE = 0.05  # the hypervisor took more than 5 % (a noisy neighbour on a VM)


def _own_cpu_s() -> float:
    """CPU seconds of this process and its finished children (the measured child)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def snapshot() -> dict[str, float]:
    """The machine's busy and steal CPU seconds, ours, and the clock, now."""
    import psutil

    t = psutil.cpu_times()
    busy = sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq"))
    return {"busy_s": busy, "steal_s": getattr(t, "steal", 0.0), "own_s": _own_cpu_s(),
            "wall_s": time.perf_counter()}


def load_between(before: dict[str, float], after: dict[str, float],
                 cores: int | None = None) -> dict[str, Any]:
    """Other processes' share of the machine's CPU and the steal share between two snapshots."""
    cores = cores or os.cpu_count() or 1
    capacity = max(after["wall_s"] - before["wall_s"], 1e-9) * cores
    other = max(0.0, (after["busy_s"] - before["busy_s"]) - (after["own_s"] - before["own_s"]))
    steal = max(0.0, after["steal_s"] - before["steal_s"])
    other_share, steal_share = min(other / capacity, 1.0), min(steal / capacity, 1.0)
    return {"other_cpu_pct": round(100 * other_share, 1), "steal_pct": round(100 * steal_share, 1),
            "loadavg_1m": round(os.getloadavg()[0], 2),
            "contended": other_share > CONTENDED_SHARE or steal_share > STEAL_SHARE}
