"""Sampling noise of an accuracy measured on n validation items (pure functions, no torch).

An accuracy on n validation sequences is a proportion: it spreads like a binomial count,
sqrt(p (1 - p) / n) (0.09 at n = 20, p = 0.2). The sequence is the unit even for per-step tasks:
the steps of one sequence are correlated, and a mean of per-sequence accuracies (each in [0, 1])
spreads at most like a binomial proportion over sequences, so counting sequences is the
conservative choice. Tolerance accuracy of regression tasks is a proportion too.

Usage::

    floor = noise_floor(n=20, chance=0.2, epochs=40, alpha=0.01)   # 0.60: best of 40 epochs, nothing learned
    lo, hi = clopper_pearson(k=6, n=20, alpha=0.01)                # one-sided each
    resolution(n=20)                                               # 0.31: smallest change told apart

Every function is cached or vectorised: detection calls them for every run of a report.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.special import bdtrc, betaincinv, ndtri, stdtrit

Z95_TWO_SIDED = 1.959963984540054


@lru_cache(maxsize=4096)
def noise_floor(n: int, chance: float, epochs: int, alpha: float) -> float:
    """The best accuracy that `epochs` evaluations reach with nothing learned stays below this
    with probability >= 1 - alpha.

    Nothing learned: the predictions carry no information about the labels, so each epoch's
    accuracy is at most a Binomial(n, chance) proportion (a model guessing with any class
    frequencies scores at most the majority rate on average, and a sum of unequal Bernoulli
    trials is less spread than a binomial with the same mean). The best of E epochs is then
    guarded by Bonferroni: P(best >= k/n) <= E * P(X >= k), valid whatever the dependence
    between epochs (they share the validation set). Returns the smallest k/n with
    E * P(X >= k) <= alpha (1.0 + 1/n when even n/n is not rare enough: nothing can be told).
    """
    if n <= 0:
        return math.inf
    p = min(max(float(chance), 0.0), 1.0)
    ks = np.arange(n + 1)
    # bdtrc(k - 1, n, p) = P(X > k - 1) = P(X >= k); for k = 0 it is 1.
    tail = np.where(ks == 0, 1.0, bdtrc(np.maximum(ks - 1, 0), n, p))
    ok = np.flatnonzero(max(int(epochs), 1) * tail <= alpha)
    return float(ks[ok[0]] / n) if ok.size else 1.0 + 1.0 / n


def whole_count(k: float, n: float) -> int:
    """A count of events as the exact intervals take it: the nearest whole number (halves up:
    2.5 -> 3), clipped to [0, n]. The one rounding rule of every Clopper-Pearson bound here."""
    return int(min(max(math.floor(float(k) + 0.5), 0), int(n)))


def clopper_pearson(k: float, n: float, alpha: float) -> tuple[float, float]:
    """Exact Clopper-Pearson bounds (lower, upper) of a proportion k/n, each one-sided at
    confidence 1 - alpha (for a two-sided 1 - 2 alpha interval, take both). `k` is rounded by
    `whole_count`; `n` must be a whole number > 0. The only implementation: noise, the boundary's
    exact bounds and `sweep refine`'s per-lr rates all call it.

    Reference values: 0 of 10 at alpha 0.05 -> upper 1 - 0.05^(1/10) = 0.2589; 10 of 10 -> lower
    0.05^(1/10) = 0.7411; 3 of 10 at alpha 0.025 -> (0.0667, 0.6525).
    """
    n = int(n)
    if n <= 0 or not 0.0 < alpha < 1.0:
        raise ValueError(f"`n > 0 and 0 < alpha < 1` must hold, but got ({n=}, {alpha=}).")
    k = whole_count(k, n)
    lower = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, alpha))
    upper = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1.0 - alpha))
    return lower, upper


def wilson_upper(k: float, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Wilson score upper bound of a proportion k/n (close to nominal
    coverage, less conservative than Clopper-Pearson; `k` may be fractional, e.g. a mean of
    several epochs' counts)."""
    from sweep.analysis.stats import wilson_interval

    k = min(max(float(k), 0.0), float(n))
    return wilson_interval(k, n, z=float(ndtri(1.0 - alpha)))[2]


def resolution(n: int, z: float = Z95_TWO_SIDED) -> float:
    """The smallest difference between two accuracies on n items that stands out from sampling
    noise at 95% (two-sided), at the worst case p = 0.5: z * sqrt(2 * 0.25 / n).

    0.31 at n = 20, 0.18 at 60, 0.10 at 200, 0.044 at 1000.
    """
    return z * math.sqrt(0.5 / n) if n > 0 else math.inf


def t_quantile(df: int, alpha: float) -> float:
    """One-sided (1 - alpha) quantile of Student's t with `df` degrees of freedom."""
    return float(stdtrit(max(int(df), 1), 1.0 - alpha))
