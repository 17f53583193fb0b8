"""The final stretch of a curve: a level that stays on the wrong side of a threshold until the end,
judged with its noise (pure functions, numpy only; used by `detection` and `loss_detection`).

Usage::

    noise = StretchNoise(scatter=0.05, item_var=lambda level: level * (1 - level) / 360)
    s = final_stretch(acc, threshold=0.405, first=7, patience=3, noise=noise, z=2.33, z_back=1.28)
    s.start, s.epochs, s.level, s.bound, s.confirmed       # or None: no stretch below at the end

Values are oriented so that "below" is the bad side: accuracy as it is, a loss as -log(loss).

The rule, in words. The run is *clearly back* over a window of consecutive epochs when the
window's mean lies at or above the threshold by more than `z_back` standard errors of that mean
(scatter only): a single epoch a hair above (0.411 against 0.405) is not a return, a run that
really recovered, for one epoch or several, is. The final stretch is the earliest epoch that
comes after the best one and after the start of every window where the run was clearly back,
that is itself below the threshold, leaves at least `patience` epochs to the end, and from
which the mean to the end (the stretch's level) is below the threshold. So the level stays
below the threshold from there to the end: no part of the stretch is clearly above it. The
stretch is *confirmed* when the level's one-sided upper bound, `z` standard errors of the mean
up, is below the threshold as well; when no candidate is confirmed, the earliest candidate is
returned unconfirmed. Noise-free (scatter 0) a window is back when its mean reaches the
threshold, so any epoch at or above it ends the stretch there: every epoch of the stretch lies
below.

The standard error of the mean of L epochs (`StretchNoise.mean_var`). Two kinds of noise move a
curve: scatter that changes from epoch to epoch (which items the model happens to get right, its
own wander), measured from the curve as `scatter`; and the noise of the validation items
themselves, which every epoch shares, so that averaging epochs does not remove it. One epoch's
item noise has variance `item_var(level)` (p (1 - p) / n for an accuracy on n items). The share
of it that changes between epochs shows up as scatter, so at most item_var - scatter^2 of it is
shared, and

    var(mean of L epochs) = max(item_var - scatter^2, 0) + scatter^2 / L.

One epoch (L = 1) gets max(item_var, scatter^2): at least its binomial noise. Where the scatter
exceeds the item noise (a model that wanders), the epochs' information adds up; where the model
keeps getting the same items right (scatter small), the shared part stays and more epochs do
not make the level surer. The come-back test uses only scatter^2 / L, the smaller variance, so
that a recovery is recognised readily (it errs towards "not collapsed").

Which scatter judges a stretch (`per_stretch`, `stretch_scatter`). The curve's scatter is read
from its second differences, which the median makes robust to a jump: two of them. On a short
run (6 to 12 epochs, a fall over a few) the rise, the peak and the fall are most of them, and
the scatter they give is the signal (0.17 on an 8-epoch curve whose binomial noise is 0.02).
So a stretch is judged with the smaller of that and the 90% upper bound of its own epochs'
scatter (robust first differences: a stretch at a level differs from epoch to epoch by its
noise alone). One scatter serves every candidate, that of the longest (earliest) one: a
scatter per candidate would let noise pick the candidate whose few epochs happen to agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from sweep.core.values import median

# 1 / Phi^-1(3/4): the median absolute value of centred normal data over its sd.
_MAD_TO_SD = float(1.0 / ndtri(0.75))

# log(scatter estimate / true sd) spreads by about this / sqrt(second differences) above 0
# (its 90% and 95% quantiles on 100,000 simulated normal curves of 3 to 100 differences).
SCATTER_LOG_SD = 1.3

# The longest window of epochs over which a return above the threshold is looked for.
MAX_BACK_WINDOW = 100

# The scatter needs second differences; fewer than this many of them say too little.
MIN_SCATTER_DIFFS = 3

# The local scatter (`local_scatter`) of k first differences at its one-sided 90% upper bound:
# estimate x exp(q), q minus the 10% quantile of log(estimate / true sd), measured on 2,000,000
# simulated normal stretches per k (an odd k, a single middle difference, spreads more). Beyond
# the table, q = 1.28 x LOCAL_LOG_SD / sqrt(k), which covers every k measured up to 100.
LOCAL_LOG_Q10 = (1.68, 0.92, 1.03, 0.76, 0.80, 0.66, 0.67, 0.58, 0.59, 0.53, 0.53, 0.48)
LOCAL_LOG_SD = 1.4

# The local scatter of a stretch is read from at most its first this many epochs.
MAX_LOCAL_EPOCHS = 100


@dataclass(frozen=True)
class Scatter:
    """A robust estimate of the sd of a curve's epoch-to-epoch scatter (`scatter`).

    Attributes:
        sd: the estimate (NaN: too few epochs to tell).
        diffs: how many second differences it was read from.
    """

    sd: float = math.nan
    diffs: int = 0

    def upper(self, z: float = 1.2815515655446004) -> float:
        """One-sided upper confidence bound of the sd (default 90%): log(estimate / truth)
        spreads by about SCATTER_LOG_SD / sqrt(diffs) above (measured on simulated normal noise,
        3 to 100 second differences: 1.0 to 1.3; the larger is taken). NaN stays NaN."""
        if not math.isfinite(self.sd) or self.diffs <= 0:
            return self.sd
        return self.sd * math.exp(z * SCATTER_LOG_SD / math.sqrt(self.diffs))


@dataclass(frozen=True)
class StretchNoise:
    """The noise of a curve's epochs (in the curve's units).

    Attributes:
        scatter: sd of the epoch-to-epoch scatter (0: noise-free; NaN: unknown, and then every
            epoch's item noise is taken as fully shared, as if no averaging helped).
        item_var: variance of one epoch's item noise at a given level (None: 0).
        diffs: the number of second differences the scatter was read from (0: not estimated).
        back_scatter: the scatter the come-back test uses (None: `scatter`); a caller that
            judges the level with an upper bound of the scatter reads returns with the estimate.
        per_stretch: judge each candidate stretch with its own scatter (`stretch_scatter`: the
            curve's without the fall into it, or its own epochs' where smaller) instead of
            `scatter`, which then serves the come-back test alone.
        curve_upper: take the curve's part of that scatter at its 90% upper bound
            (`Scatter.upper`), as the loss calls do; the accuracy, whose binomial noise is a
            floor, takes the estimate.
    """

    scatter: float = 0.0
    item_var: Callable[[np.ndarray], np.ndarray] | None = None
    diffs: int = 0
    back_scatter: float | None = None
    per_stretch: bool = False
    curve_upper: bool = False

    def mean_var(
        self, level: np.ndarray, epochs: np.ndarray, scatter: np.ndarray | float | None = None
    ) -> np.ndarray:
        """Variance of the mean of `epochs` epochs whose mean is `level` (see module docstring),
        with `scatter` in place of self.scatter where given (per stretch; NaN: unknown)."""
        item = (
            np.zeros_like(np.asarray(level), dtype=float)
            if self.item_var is None
            else np.asarray(self.item_var(level), dtype=float)
        )
        s = np.asarray(self.scatter if scatter is None else scatter, dtype=float)
        s2 = np.where(np.isfinite(s), s, 0.0) ** 2
        return np.where(np.isfinite(s), np.maximum(item - s2, 0.0) + s2 / epochs, item)

    def back_sd(self, epochs: np.ndarray) -> np.ndarray:
        """sd of a mean of `epochs` epochs for the come-back test: scatter only (the smaller)."""
        s = self.scatter if self.back_scatter is None else self.back_scatter
        s = s if math.isfinite(s) else 0.0
        return s / np.sqrt(epochs)

    def epoch_var(self, level: float) -> float:
        """Variance of one epoch: max(item_var, scatter^2)."""
        item = 0.0 if self.item_var is None else float(self.item_var(np.asarray(level)))
        s2 = self.scatter**2 if math.isfinite(self.scatter) else 0.0
        return max(item, s2)


@dataclass(frozen=True)
class Stretch:
    """The final stretch of a curve below a threshold.

    Attributes:
        start: its first epoch (counted from 1).
        epochs: its length, start to the end of the curve.
        level: the mean of its epochs.
        bound: the one-sided upper bound of that level (= level when noise-free).
        confirmed: bound < threshold: the level is below by more than its noise.
        back: the last epoch (from 1) that starts a window where the run was clearly back at or
            above the threshold (0: none).
        scatter: the epoch-to-epoch scatter that judged it (`StretchNoise.scatter`, or
            `stretch_scatter` with `per_stretch`); NaN: unknown.
    """

    start: int
    epochs: int
    level: float
    bound: float
    confirmed: bool
    back: int
    scatter: float = math.nan


def scatter(
    values: np.ndarray, split: int | None = None, min_diffs: int = MIN_SCATTER_DIFFS
) -> Scatter:
    """Robust sd of a curve's epoch-to-epoch scatter around a smooth trend: the estimator of
    `sweep.analysis.shapes.noise_scale` (1.4826 x median |second difference| / sqrt(6): a second
    difference of independent noise of sd s has sd sqrt(6) s) over its finite epochs, in order,
    on the curve's own scale (noise_scale's curves are log losses). A jump moves only two second
    differences, which the median ignores; `split` (a 0-based epoch index, where a stretch
    starts) leaves those two out, so a short curve's jump does not count as noise. NaN with
    fewer than `min_diffs` second differences."""
    x = np.asarray(values, dtype=float)
    keep = np.isfinite(x)
    if split is None or not 0 < split < x.size:
        parts = [x[keep]]
    else:
        parts = [x[:split][keep[:split]], x[split:][keep[split:]]]
    diffs = [p[2:] - 2.0 * p[1:-1] + p[:-2] for p in parts if p.size >= 3]
    d = np.concatenate(diffs) if diffs else np.empty(0)
    if d.size < min_diffs:
        return Scatter(math.nan, int(d.size))
    return Scatter(_MAD_TO_SD * median(np.abs(d)) / math.sqrt(6.0), int(d.size))


def local_scatter(values: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scatter of each final stretch's own epochs: for each 0-based start t, the robust sd
    of the first differences of values[t:] (at most MAX_LOCAL_EPOCHS epochs), 1.4826 x median
    |difference| / sqrt(2), and how many differences it was read from (NaN with none).

    First differences of the stretch, not second differences of the curve: a short curve's
    rise, peak and fall make most of its second differences (8 epochs hold 6, every one of them
    signal when the fall takes a few epochs), while a stretch that sits at a level differs from
    epoch to epoch by its noise alone; the median ignores the one difference from a last epoch
    of the fall at the stretch's start, and a drift inside the stretch only raises it."""
    x = np.asarray(values, dtype=float)
    starts = np.asarray(starts, dtype=int)
    if x.size < 2 or starts.size == 0:
        return np.full(starts.size, math.nan), np.zeros(starts.size, dtype=int)
    d = np.abs(np.diff(x))
    sd = np.full(starts.size, math.nan)
    counts = np.zeros(starts.size, dtype=int)
    for i, t in enumerate(starts):
        # the differences inside the stretch (its first MAX_LOCAL_EPOCHS epochs)
        inside = d[max(int(t), 0) : max(int(t) + MAX_LOCAL_EPOCHS - 1, 0)]
        counts[i] = inside.size
        inside = inside[np.isfinite(inside)]
        if inside.size:
            sd[i] = _MAD_TO_SD * median(inside) / math.sqrt(2.0)
    return sd, counts


def local_upper(sd: np.ndarray, diffs: np.ndarray) -> np.ndarray:
    """One-sided 90% upper confidence bound of a local scatter read from `diffs` first
    differences (LOCAL_LOG_Q10). NaN stays NaN."""
    k = np.asarray(diffs, dtype=int)
    table = np.asarray(LOCAL_LOG_Q10)
    q = np.where(
        k <= table.size,
        table[np.clip(k, 1, table.size) - 1],
        1.2815515655446004 * LOCAL_LOG_SD / np.sqrt(np.maximum(k, 1)),
    )
    return np.where(k > 0, np.asarray(sd, dtype=float) * np.exp(q), math.nan)


def stretch_scatter(values: np.ndarray, start: int, curve_at_upper: bool = False) -> float:
    """The scatter that judges a final stretch starting at index `start` (0-based): the smaller
    of the curve's (`scatter`, without the two second differences at `start`; at its 90% bound
    when `curve_at_upper`) and the 90% upper bound of the stretch's own (`local_scatter`,
    `local_upper`). Either is evidence of how small the noise is: a short curve's rise, peak and
    fall inflate the first, and the second is read from few epochs, so it is taken at its bound
    and noise alone seldom makes it the smaller by chance. NaN where neither is known."""
    curve = scatter(values, start)
    whole = curve.upper() if curve_at_upper else curve.sd
    own = float(local_upper(*local_scatter(values, np.asarray([start])))[0])
    return float(np.fmin(whole, own))  # (NaN only where both are)


def back_starts(x: np.ndarray, threshold: float, noise: StretchNoise, z_back: float) -> np.ndarray:
    """For each epoch index a: is the run clearly at or above `threshold` over some window of
    epochs starting at a, that is, mean(x[a..b]) - z_back x back_sd(b - a + 1) >= threshold for
    some b >= a? Windows of up to MAX_BACK_WINDOW epochs (a longer return shows in its parts). A
    final stretch must start after every such a."""
    n = x.size
    csum = np.concatenate([[0.0], np.cumsum(x - threshold)])
    sizes = np.arange(1, min(n, MAX_BACK_WINDOW) + 1, dtype=float)
    margins = z_back * noise.back_sd(sizes) * sizes
    if n <= MAX_BACK_WINDOW:  # every window at once: [b, a] -> the window x[a..b]
        length = np.subtract.outer(np.arange(n), np.arange(n)) + 1
        excess = csum[1:, None] - csum[None, :-1] - margins[np.maximum(length, 1) - 1]
        return ((excess >= 0.0) & (length >= 1)).any(axis=0)
    clear = np.zeros(n, dtype=bool)
    for length in range(1, sizes.size + 1):
        # sum(x[a..a+length-1] - threshold) >= z_back x sd x length
        clear[: n - length + 1] |= csum[length:] - csum[:-length] >= margins[length - 1]
    return clear


def _candidate_starts(
    x: np.ndarray, threshold: float, first: int, patience: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(t, lengths, tail_mean): the indices from `first` on where a final stretch could start (an
    epoch below the threshold, at least `patience` epochs from the end, from which the mean to the
    end is below it too), and each index's epochs and mean to the end. Without an epoch below the
    threshold the means are not computed (None) and t is empty."""
    lengths = np.arange(x.size, 0, -1, dtype=float)
    below = (x < threshold) & (lengths >= patience)
    below[:first] = False
    if not below.any():
        return np.empty(0, dtype=int), lengths, None
    tail_mean = np.cumsum(x[::-1])[::-1] / lengths
    return np.flatnonzero(below & (tail_mean < threshold)), lengths, tail_mean


def any_candidate(values: np.ndarray, threshold: float, first: int, patience: int) -> bool:
    """Could a final stretch start anywhere from index `first` (0-based) on: an epoch below the
    threshold, at least `patience` epochs from the end, from which the mean to the end is below
    it too? Without one `final_stretch` returns None, whatever the noise: a caller checks this
    before it measures the noise (most runs of a sweep have none)."""
    x = np.asarray(values, dtype=float)
    return _candidate_starts(x, threshold, max(int(first), 0), patience)[0].size > 0


def final_stretch(
    values: np.ndarray,
    threshold: float,
    *,
    first: int,
    patience: int,
    noise: StretchNoise,
    z: float,
    z_back: float,
    upper: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Stretch | None:
    """The final stretch below `threshold` (module docstring), or None.

    Args:
        values: per-epoch values, lower is worse, finite (callers map a lost output to its worst).
        threshold: the level a stretch must stay below.
        first: 0-based index of the first epoch a stretch may start at (the one after the best).
        patience: minimum length of the stretch, in epochs.
        noise: the curve's noise.
        z: one-sided quantile of the level test (the stretch is below by more than its noise).
        z_back: one-sided quantile of the come-back test.
        upper: optional (levels, lengths, scatters) -> upper bounds, replacing
            level + z sqrt(mean_var) (the accuracy uses a Wilson bound for its item noise).

    Returns:
        The earliest confirmed candidate stretch, else the earliest candidate, else None.
    """
    x = np.asarray(values, dtype=float)
    first = max(int(first), 0)
    t, lengths, tail_mean = _candidate_starts(x, threshold, first, patience)
    if t.size == 0:  # (the usual case: no window scan)
        return None
    back = back_starts(x[first:], threshold, noise, z_back)
    hits = np.flatnonzero(back)
    last_back = first + int(hits[-1]) if hits.size else first - 1
    t = t[t > last_back]  # the candidates after the last come-back
    if t.size == 0:
        return None
    level, epochs = tail_mean[t], lengths[t]
    if noise.per_stretch:
        # One scatter for every candidate, that of the longest: a scatter per candidate would
        # let noise pick the candidate whose few epochs happen to agree.
        spread = np.full(t.size, stretch_scatter(x, int(t[0]), noise.curve_upper))
    else:
        spread = np.full(t.size, noise.scatter, dtype=float)
    if upper is not None:
        bound = np.asarray(upper(level, epochs, spread), dtype=float)
    else:
        bound = level + z * np.sqrt(noise.mean_var(level, epochs, spread))
    confirmed = bound < threshold
    i = int(np.argmax(confirmed)) if confirmed.any() else 0
    return Stretch(
        start=int(t[i]) + 1,
        epochs=int(epochs[i]),
        level=float(level[i]),
        bound=float(bound[i]),
        confirmed=bool(confirmed[i]),
        back=last_back + 1 if hits.size else 0,
        scatter=float(spread[i]),
    )
