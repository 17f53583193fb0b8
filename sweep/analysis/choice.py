"""Which settings the data cannot tell apart from the best, by accuracy (pure functions).

Usage::

    tied = not_worse_than_best(means, seed_sd, n_seeds, n_val)     # bool per setting
    within, too_few = within_noise_of_best(means, seed_sd, n_seeds, n_val)
    validation_half_width(0.984, 370)                                 # 0.0128: 95% noise of one accuracy

A setting's mean best accuracy is uncertain for two reasons: the seeds differ (their spread s over
n seeds gives s^2 / n), and every accuracy is measured on the same n_val validation sequences, a
sample of the data the model will meet (a proportion p has variance p (1 - p) / n_val, which more
seeds do not shrink: four seeds that all scored 364/370 still only know the accuracy to +-0.013).
The variance of a setting's mean is taken as the sum of both (conservative: the validation part
of the seeds' spread is counted twice at most).

"Worse than the best": best - mean_i exceeds a margin made of the seeds' part of its standard
error times a Student-t critical value (Welch-Satterthwaite degrees of freedom: from as few as 3
seeds) and the validation part times a normal one, added in quadrature, less one count of the
validation set (continuity). The best is picked after looking, so the critical value
guards every pair, not just the k - 1 comparisons with the best (Hsu's multiple comparisons with
the best would allow ties to be called "not the best"): two-sided at alpha over the k (k - 1) / 2
pairs (Bonferroni, valid for unequal variances). Then, with probability >= 1 - alpha, no setting
as good as the best in truth is called worse, whatever the number of settings;
tests/test_verdicts.py simulates settings of equal accuracy and counts false "better" claims.

"Within the noise of the best" (what the recommendation may prefer for its distance from
collapse) asks more: not shown worse, and a gap to the best no larger than what the validation
noise alone produces for the pair (the margin above without the seeds' part). Not being shown
worse is no evidence of being as good when the seeds are few: with 2 seeds per setting the
seeds' part takes a Student-t critical value near 1 degree of freedom (12.7 for two settings,
191 for six), so a mean of 0.201 (one of its two seeds learned) was "not worse" than 0.914. The
validation noise is known without estimating anything, so a setting whose mean lies further
below the best than it can reach is never called within noise; when the seeds cannot show it
worse either, the seeds are too few to tell (`within_noise_of_best`'s second answer). Without a
validation size, only the seeds' test is left, and it counts only from `MIN_SEEDS` seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import ndtri, stdtrit

ALPHA = 0.05
MIN_SEEDS = 3  # without a validation size, fewer seeds than this cannot put a setting within noise


def validation_half_width(p: float, n_val: int | None, z: float = 1.959963984540054) -> float:
    """Half-width of the 95% interval of one accuracy p measured on n_val sequences (NaN unknown)."""
    if not n_val or not math.isfinite(p):
        return math.nan
    p = min(max(p, 0.0), 1.0)
    return z * math.sqrt(
        max(p * (1 - p), 0.25 / n_val) / n_val
    )  # never zero: 364/370 is not certain


def not_worse_than_best(
    means: Sequence[float],
    seed_sd: Sequence[float],
    n_seeds: Sequence[int],
    n_val: int | None = None,
    alpha: float = ALPHA,
) -> np.ndarray:
    """True for every setting not shown worse than the one with the highest mean (itself included).

    Args:
        means: mean best accuracy per setting.
        seed_sd: sd of the per-seed best accuracies (0 when all seeds scored the same; NaN for a
            single seed: its spread is unknown, so it can never be shown worse).
        n_seeds: seeds per setting.
        n_val: validation sequences (None: only the seeds' spread counts).
    """
    m = np.asarray(means, dtype=float)
    sd = np.asarray(seed_sd, dtype=float)
    n = np.asarray(n_seeds, dtype=float)
    k = len(m)
    if k <= 1:
        return np.ones(k, dtype=bool)
    seed_var = np.where(n > 1, sd**2 / np.maximum(n, 1), np.inf)
    val_var = np.clip(m * (1 - m), 0.25 / n_val, None) / n_val if n_val else np.zeros(k)
    best = int(np.nanargmax(m))
    level = 1.0 - alpha / (k * (k - 1))  # two-sided alpha over k (k - 1) / 2 pairs
    z = float(ndtri(level))
    # The seeds' part of each difference gets its own Student-t margin (Welch-Satterthwaite df,
    # from as few as 3 seeds), the validation part a normal one; the margins add in quadrature.
    seed_part = seed_var + seed_var[best]
    df_parts = np.where(n > 1, seed_var**2 / np.maximum(n - 1, 1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        df = np.where(
            df_parts + df_parts[best] > 0, seed_part**2 / (df_parts + df_parts[best]), np.inf
        )
    t = np.where(np.isfinite(df), stdtrit(np.maximum(np.nan_to_num(df, posinf=1e9), 1.0), level), z)
    margin = np.sqrt(z**2 * (val_var + val_var[best]) + t**2 * seed_part)
    # A difference of one validation count or less is never evidence (continuity: accuracies are
    # counts, and a z test on counts is otherwise liberal at small n_val).
    diff = m[best] - m - (1.0 / n_val if n_val else 0.0)
    with np.errstate(invalid="ignore"):
        shown_worse = np.isfinite(margin) & (diff > margin)
    out = ~shown_worse
    out[best] = True
    return out


def within_noise_of_best(
    means: Sequence[float],
    seed_sd: Sequence[float],
    n_seeds: Sequence[int],
    n_val: int | None = None,
    alpha: float = ALPHA,
) -> tuple[np.ndarray, np.ndarray]:
    """(within, too_few), a bool per setting. within: not shown worse than the best, and no
    further below it than the validation noise of the pair reaches (module doc; the best itself
    is within). too_few: not shown worse, but further below than that: the seeds are too few to
    tell whether it is as good, so it is not preferred to the best.

    Args: as `not_worse_than_best`.
    """
    m = np.asarray(means, dtype=float)
    n = np.asarray(n_seeds, dtype=float)
    k = len(m)
    not_worse = not_worse_than_best(means, seed_sd, n_seeds, n_val, alpha)
    if k <= 1:
        return not_worse, np.zeros(k, dtype=bool)
    best = int(np.nanargmax(m))
    gap = m[best] - m
    if n_val:
        val_var = np.clip(m * (1 - m), 0.25 / n_val, None) / n_val
        z = float(ndtri(1.0 - alpha / (k * (k - 1))))  # the pair margin's level, as above
        close = gap - 1.0 / n_val <= z * np.sqrt(val_var + val_var[best])
    else:
        close = (gap <= 0) | ((n >= MIN_SEEDS) & (n[best] >= MIN_SEEDS))
    close[best] = True
    return not_worse & close, not_worse & ~close
