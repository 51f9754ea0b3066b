"""Stop a hopeless bench row early, with an error rate that holds under repeated looks.

The undistilled base rows are measured to show that the small model used directly misses
the bar; on the default task they score ~0.0-0.05 against a bar near 0.8, which a few dozen
prompts already show. A row that may stop answers the primary eval set in a fixed random
order (`order`, seeded: the answered prompts are a uniform sample of the set) and is looked
at after `looks(N)` prompts — 20, 40, 80, … (doubling, so at most ~log2(N/20) looks and
few restarts). At each look the upper confidence bound on the set's mean per-prompt score is

    mean + sqrt(ln(K / alpha) / (2 n))

Hoeffding's inequality (which also holds for sampling without replacement from a finite set,
Hoeffding 1963, section 6) at level alpha / K for each of the K planned looks: a Bonferroni
alpha-spending rule, so the chance that *any* look stops a row whose mean over the whole set
reaches the bar is at most alpha (5 %). A plain bootstrap interval at each look would not
hold that: looking K times at a 95 % interval errs up to K times as often. Only metrics that
are means of per-prompt scores in [0, 1] (a task kind's `mean_metrics`) can stop; a shipped
row never stops (the bench marks only the base rows).

Example:
    >>> from pipeline.measure.sequential import looks, upper_bound
    >>> looks(200)
    [20, 40, 80, 160]
    >>> round(upper_bound([0.0] * 20, n_looks=4), 3)   # 0 of 20 right: the mean is < 0.34
    0.331
    >>> upper_bound([0.0] * 20, n_looks=4) < 0.786    # so a bar of 0.786 is out of reach
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ALPHA = 0.05  # the chance, over all looks together, of stopping a row that reaches the bar
FIRST_LOOK = 20  # prompts before the first look
SEED = 0  # the order the prompts are answered in: fixed, so a rebuild answers the same ones


def looks(n_total: int, first: int = FIRST_LOOK) -> list[int]:
    """The prompt counts at which a row is looked at: first, 2·first, … below n_total (at
    n_total the row is complete and its value exact, so no look is needed there)."""
    out, n = [], first
    while n < n_total:
        out.append(n)
        n *= 2
    return out


def upper_bound(scores: Sequence[float], n_looks: int, alpha: float = ALPHA) -> float:
    """Hoeffding upper bound on the set's mean per-prompt score from the first n scores (each
    in [0, 1]) at level alpha / n_looks."""
    n = len(scores)
    if n == 0:
        return 1.0
    return float(np.mean(scores)) + math.sqrt(math.log(max(n_looks, 1) / alpha) / (2 * n))


def order(indices: Sequence[int], seed: int = SEED) -> list[int]:
    """The indices in the fixed random order a stoppable row answers them in."""
    rng = np.random.default_rng(seed)
    return [int(i) for i in rng.permutation(np.asarray(indices, dtype=int))]
