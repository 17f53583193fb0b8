"""Interval estimates used by the summary table (pure functions).

- `mean_interval`: mean of per-seed values with a 95% Student-t interval.
- `wilson_interval`: a rate k/n with the 95% Wilson score interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy.special import stdtrit  # Student-t quantile; scipy.stats costs 0.5 s to import

Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float, float]:
    """(k/n, lo, hi): the Wilson score interval of a binomial rate.

    Reference values: 0/5 -> (0, 0.4345); 1/5 -> (0.0362, 0.6245); 5/5 -> (0.5655, 1);
    3/10 -> (0.1078, 0.6032). `n == 0` gives (nan, 0, 1): nothing is known.
    """
    if n < 0 or k < 0 or k > n:  # (k may be fractional: a mean count over epochs)
        raise ValueError(f"`0 <= k <= n` must hold, but got ({k=}, {n=}).")
    if n == 0:
        return math.nan, 0.0, 1.0
    p = k / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z / den * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    # Exact ends: k = 0 has lo = 0 and k = n has hi = 1 (float rounding aside).
    return p, (0.0 if k == 0 else lo), (1.0 if k == n else hi)


def mean_interval(
    values: Sequence[float], bounds: tuple[float, float] = (0.0, 1.0), confidence: float = 0.95
) -> tuple[float, float, float]:
    """(mean, lo, hi): Student-t interval of the mean, clipped to the metric's `bounds`.

    With a single value the interval is the whole range (nothing is known about the spread).
    Non-finite values are not allowed: callers substitute what a failed run scores.
    """
    xs = [float(v) for v in values]
    if not xs:
        return math.nan, bounds[0], bounds[1]
    if not all(math.isfinite(v) for v in xs):
        raise ValueError(f"values must be finite, but got {xs}")
    n = len(xs)
    mean = math.fsum(xs) / n
    mean = min(bounds[1], max(bounds[0], mean))
    if n == 1:
        return mean, bounds[0], bounds[1]
    var = math.fsum((v - mean) ** 2 for v in xs) / (n - 1)
    half = float(stdtrit(n - 1, 0.5 + confidence / 2)) * math.sqrt(var / n)
    return mean, max(bounds[0], mean - half), min(bounds[1], mean + half)
