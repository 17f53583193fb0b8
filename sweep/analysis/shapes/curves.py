"""Curve shapes of one run: a loss that jumps and never recovers, and a loss that fluctuates.

Pure functions over per-epoch curves (numpy and scipy.special, no torch). Epochs count from 1.

Usage::

    jump = loss_jump(val_loss)      # LossJump(epoch, before, after, ratio, z) or None
    jumps = loss_jumps(curves)      # the same for each row of a (runs x epochs) array, fast
    vol = volatility(train_loss)    # typical epoch-to-epoch noise of the log loss, or NaN

Both work on the log of the loss: a change is read relative to the loss (+10% is the same step
at loss 2.0 as at 0.02), and the noise of a loss curve is roughly multiplicative.

Both measure noise the same way (`noise_scale`): 1.4826 x the median |second difference| of
the log loss / sqrt(6), a robust estimate of the standard deviation of independent per-epoch
noise that a smooth trend does not inflate. "0.02" reads "the loss jitters by about 2%".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from sweep.core.values import median

# 1 / Phi^-1(3/4): turns the median absolute value of centred normal data into its sd.
_MAD_TO_SD = float(1.0 / ndtri(0.75))  # 1.4826...

# A second difference x[t+1] - 2 x[t] + x[t-1] of independent noise of sd s has sd sqrt(6) s.
_SECOND_DIFF_SD = math.sqrt(6.0)

# Epochs whose median is the level just after a candidate jump: the jump's epoch and the 2
# after it (one outlying epoch is ignored, and a jump completed over two epochs counts in full).
_AFTER_EPOCHS = 3
# The level just before a candidate is the higher of the medians of the last 3 and of the
# last 7 epochs: the long median is not pulled down by a dip of up to 3 epochs just before
# (else the return from a dip would look like a jump up), the short one follows a curve that
# is already rising (else a slow upturn would look like a step). The higher errs towards no jump.
_BEFORE_SHORT = 3
_BEFORE_LONG = 7

# Default jump threshold in noise standard deviations. Chosen on simulated noise-only curves
# (tests/test_shapes.py: flat, decaying, slowly upturning; normal and Student-t(3) noise;
# 20 to 500 epochs; 10,000 curves each): at 7 no scenario exceeds 0.7% false alarms (most have
# none), while a +20% jump on a curve with 1% noise (18 noise sds) is caught every time.
DEFAULT_JUMP_Z = 7.0

# volatility() needs at least this many usable second differences after warm-up (that is, at
# least 7 consecutive finite epochs); a median of fewer says too little about the noise.
MIN_VOLATILITY_DIFFS = 5

# Rows of loss_jumps() scanned together: bounds the memory of the per-epoch temporaries.
_CHUNK_ROWS = 512


@dataclass(frozen=True)
class LossJump:
    """A jump of the validation loss that never recovers.

    Attributes:
        epoch: first epoch of the elevated stretch (counted from 1).
        before: lowest loss of the epochs before `epoch` (the running minimum).
        after: median loss from `epoch` to the end of the (finite part of the) run.
        ratio: after / before.
        z: the step that was tested (log of the level just after over the level just before,
            see `loss_jump`) in noise standard deviations of the epochs before; inf when those
            epochs had no noise at all.
    """

    epoch: int
    before: float
    after: float
    ratio: float
    z: float


def usable_log_prefix(loss: Sequence[float]) -> np.ndarray:
    """Log of the loss over its leading epochs that are finite and positive.

    The curve ends at its first NaN, inf or non-positive value: a non-finite run is reported
    as such elsewhere, and what it did before is all that can be read as a shape.

    Args:
        loss: per-epoch loss values.

    Returns:
        1-D float array, possibly empty.
    """
    values = np.asarray(loss, dtype=float).ravel()
    # NaN compares False, so NaN, inf and values <= 0 all end the prefix.
    bad = ~(np.isfinite(values) & (values > 0))
    end = int(np.argmax(bad)) if bad.any() else values.size
    return np.log(values[:end])


def _robust_sd(second_differences: np.ndarray) -> float:
    """Per-epoch noise sd from second differences of a log-loss curve (see module docstring)."""
    return _MAD_TO_SD * median(np.abs(second_differences)) / _SECOND_DIFF_SD


def noise_scale(log_loss: np.ndarray) -> float:
    """Robust standard deviation of the per-epoch noise of a log-loss curve.

    1.4826 x median |x[t+1] - 2 x[t] + x[t-1]| / sqrt(6). Second differences cancel a locally
    straight trend (a steady descent, a slow drift) which first differences would count as
    noise, and a slowly bending one (the fast early descent) nearly so; the median ignores
    spikes; for independent noise of sd s a second difference has sd sqrt(6) s.

    Args:
        log_loss: finite log loss per epoch, at least 3 epochs.

    Returns:
        The scale (0.0 when at least half the second differences are 0, e.g. no noise).
    """
    return _robust_sd(log_loss[2:] - 2.0 * log_loss[1:-1] + log_loss[:-2])


def loss_jump(
    val_loss: Sequence[float],
    *,
    z: float = DEFAULT_JUMP_Z,
    min_rise: float = 1.1,
    min_before: int = 5,
    patience: int = 3,
) -> LossJump | None:
    """Find the first jump of the validation loss that never recovers, or None.

    The rule, in plain words, on the log of the loss. The run's own noise before a candidate
    epoch k is the robust standard deviation of its epoch-to-epoch noise over all epochs
    before k (`noise_scale`). The level just before k is the higher of the median loss of the
    last 3 and of the last 7 epochs before k (a dip of a few epochs is not taken for the level,
    and on a rising curve the latest epochs count). The level just after is the median loss of
    epochs k, k+1, k+2 (those that exist, near the end with patience < 3). Epoch k starts a jump when all of these hold:

    1. Enough history, lasting to the end: at least `min_before` epochs before k, and at least
       `patience` epochs from k to the end of the run.
    2. Sudden: the level just after is at least `z` noise sds above the level just before,
       and at least `min_rise` times it (1.1: +10%), so that a tiny jump on an ultra-smooth
       curve is not reported however many noise sds it is.
    3. Never comes back: every epoch from k to the end stays more than z/2 noise sds above the
       level just before, and k is where that stretch starts (epoch k-1 is not above it). A
       spike that returns to where the curve was is not a jump.
    4. Large overall: the median loss from k to the end is at least `min_rise` times the
       lowest loss before k (the running minimum).

    The first such epoch is reported. A slow upturn (overfitting) fails 2: its rise over the
    few epochs around any k is small next to the noise, however large its total. Noise alone
    rarely passes 2 and 3 together: with the default z = 7 at most 0.7% of simulated
    noise-only curves (flat, decaying or slowly upturning; normal or Student-t(3) noise; 20 to
    500 epochs) report a jump, and none in most settings. Strongly autocorrelated noise (slow wandering of the level) is
    less well covered: the noise sd is measured epoch to epoch.

    Only the leading finite, positive part of the curve is read (`usable_log_prefix`): a curve
    that turns NaN/inf is judged on the epochs before; it never raises for bad values.

    `before` is the single lowest epoch, which on a noisy curve lies a couple of noise sds
    under the typical level, so `ratio` slightly exceeds the ratio of typical levels.

    Args:
        val_loss: validation loss per epoch.
        z: jump threshold in noise standard deviations (> 0).
        min_rise: minimum relative size of the jump and of the stretch after it (>= 1).
        min_before: minimum epochs before the jump (>= 4: the noise needs 2 second differences).
        patience: minimum epochs from the jump to the end of the run (>= 1).

    Returns:
        The first LossJump, or None.

    Raises:
        ValueError: for parameters out of range.
    """
    _check_jump_parameters(z, min_rise, min_before, patience)
    x = usable_log_prefix(val_loss)
    return _scan(x[np.newaxis, :], z, min_rise, min_before, patience)[0]


def loss_jumps(
    curves: np.ndarray | Sequence[Sequence[float]],
    *,
    z: float = DEFAULT_JUMP_Z,
    min_rise: float = 1.1,
    min_before: int = 5,
    patience: int = 3,
) -> list[LossJump | None]:
    """`loss_jump` of each row of a (runs x epochs) array, vectorised over the runs.

    Gives the same answers as `loss_jump` row by row (rows holding a NaN, inf or non-positive
    loss are passed to it one by one), many times faster for thousands of curves.

    Args:
        curves: 2-D array-like, one validation-loss curve per row.
        z, min_rise, min_before, patience: as in `loss_jump`.

    Returns:
        One LossJump or None per row.

    Raises:
        ValueError: for parameters out of range or curves that are not 2-D.
    """
    _check_jump_parameters(z, min_rise, min_before, patience)
    values = np.asarray(curves, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"curves must be 2-D (runs x epochs), got shape {values.shape}")
    results: list[LossJump | None] = [None] * values.shape[0]
    clean = (np.isfinite(values) & (values > 0)).all(axis=1)
    clean_rows = np.flatnonzero(clean)
    for start in range(0, clean_rows.size, _CHUNK_ROWS):
        rows = clean_rows[start : start + _CHUNK_ROWS]
        # Contiguous rows (the usual case: every row clean) are sliced, not copied by indexing.
        chunk = (
            values[rows[0] : rows[-1] + 1] if rows[-1] - rows[0] == rows.size - 1 else values[rows]
        )
        for row, jump in zip(
            rows.tolist(), _scan(np.log(chunk), z, min_rise, min_before, patience)
        ):
            results[row] = jump
    for row in np.flatnonzero(~clean):
        results[row] = loss_jump(
            values[row], z=z, min_rise=min_rise, min_before=min_before, patience=patience
        )
    return results


def _check_jump_parameters(z: float, min_rise: float, min_before: int, patience: int) -> None:
    """Raise ValueError for parameters of loss_jump that make no sense."""
    if not (z > 0 and math.isfinite(z)):
        raise ValueError(f"z must be a positive number, got {z!r}")
    if not (min_rise >= 1.0 and math.isfinite(min_rise)):
        raise ValueError(f"min_rise must be >= 1, got {min_rise!r}")
    if int(min_before) != min_before or min_before < 4:
        raise ValueError(f"min_before must be an integer >= 4, got {min_before!r}")
    if int(patience) != patience or patience < 1:
        raise ValueError(f"patience must be an integer >= 1, got {patience!r}")


def _scan(
    x: np.ndarray, z: float, min_rise: float, min_before: int, patience: int
) -> list[LossJump | None]:
    """loss_jump on each row of x, a (runs x epochs) array of finite log losses.

    Conditions that need no noise scale are checked first, for every epoch of every row at
    once: with the short (3-epoch) level before, which is never above the final level before,
    so no true jump is dropped; then, for the few epochs left, with the final level before. The
    noise scale, a median over all earlier epochs, is computed only for the epochs left after
    that, in epoch order, until one passes everything.
    """
    runs, n = x.shape
    results: list[LossJump | None] = [None] * runs
    first, last = int(min_before), n - int(patience)  # 0-based index k of the jump's epoch
    if last < first:
        return results
    ks = np.arange(first, last + 1)
    level_after = _levels_after(x)
    # The median of epochs k-3..k-1 is the "after" median of epoch k-3 (first >= 4 > 3).
    short_before = level_after[:, first - _BEFORE_SHORT : last + 1 - _BEFORE_SHORT]
    after = level_after[:, first : last + 1]
    lowest_from = np.minimum.accumulate(x[:, ::-1], axis=1)[:, ::-1][:, first : last + 1]
    min_step = math.log(min_rise)
    possible = (after - short_before >= min_step) & (lowest_from - short_before > 0.0)
    rows, cols = np.nonzero(possible)  # row-major: each row's candidates in epoch order
    if rows.size == 0:
        return results
    before = np.maximum(short_before[rows, cols], _long_levels_before(x, rows, ks[cols]))
    step = after[rows, cols] - before
    margin = lowest_from[rows, cols] - before  # how far every epoch from k on stays above
    previous = x[rows, ks[cols] - 1] - before  # the epoch before k, over the level before
    keep = (step >= min_step) & (margin > 0.0)
    for row, k, k_step, k_margin, k_previous in zip(
        rows[keep].tolist(), ks[cols[keep]].tolist(), step[keep], margin[keep], previous[keep]
    ):
        if results[row] is None:
            rise = _Rise(float(k_step), float(k_margin), float(k_previous))
            results[row] = _verify_jump(x[row], k, rise, z, min_rise)
    return results


def _long_levels_before(x: np.ndarray, rows: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Median of the (up to) 7 epochs before 0-based epoch ks[i] of row rows[i]."""
    levels = np.empty(ks.size)
    full = ks >= _BEFORE_LONG
    if full.any():
        epochs = ks[full, np.newaxis] - _BEFORE_LONG + np.arange(_BEFORE_LONG)
        levels[full] = np.median(x[rows[full, np.newaxis], epochs], axis=1)
    for i in np.flatnonzero(~full):  # the first epochs of a run: fewer than 7 epochs before
        levels[i] = median(x[rows[i], : ks[i]])
    return levels


def _median_of_three(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Element-wise median of three equal-shape arrays (branch-free, no sorting)."""
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))


def _levels_after(x: np.ndarray) -> np.ndarray:
    """Median of each epoch and the (up to) 2 epochs after it, per row; the last 2 epochs of a
    row use what is left (the median of two is their mean)."""
    n = x.shape[1]
    levels = np.empty_like(x)
    if n >= _AFTER_EPOCHS:
        levels[:, : n - 2] = _median_of_three(x[:, :-2], x[:, 1:-1], x[:, 2:])
    if n >= 2:
        levels[:, n - 2] = 0.5 * (x[:, n - 2] + x[:, n - 1])
    if n >= 1:
        levels[:, n - 1] = x[:, n - 1]
    return levels


@dataclass(frozen=True)
class _Rise:
    """Log-loss differences at a candidate epoch k, all over the level just before k."""

    step: float  # level just after k
    margin: float  # lowest epoch from k to the end
    previous: float  # epoch k - 1


def _verify_jump(x: np.ndarray, k: int, rise: _Rise, z: float, min_rise: float) -> LossJump | None:
    """Check the noise-scaled conditions for a jump at 0-based index k of one log curve."""
    scale = noise_scale(x[:k])
    # A noise-free history (scale 0) makes any positive step infinitely many noise sds.
    sudden = rise.step >= z * scale
    elevated = 0.5 * z * scale  # "has not come back" means staying above this
    # The stretch from k stays elevated, and starts at k: the epoch before was not elevated yet.
    stays = rise.margin > elevated and rise.previous <= elevated
    if not (sudden and stays):
        return None
    before = math.exp(float(x[:k].min()))  # the running minimum
    after = median(np.exp(x[k:]))
    ratio = after / before
    if ratio < min_rise:
        return None
    size = rise.step / scale if scale > 0 else math.inf
    return LossJump(epoch=k + 1, before=before, after=after, ratio=ratio, z=size)


def warmup_epochs(n_epochs: int, warmup: float | int) -> int:
    """Number of leading epochs that warm-up skips.

    Args:
        n_epochs: epochs in the run.
        warmup: an int is a number of epochs; a float in [0, 1) is a fraction of the run,
            rounded up, and at least 1 epoch when positive.

    Returns:
        Epochs to skip, 0 to n_epochs.

    Raises:
        ValueError: for a negative int, a float outside [0, 1), or a bool.
    """
    if isinstance(warmup, (bool, np.bool_)):
        raise ValueError(f"warmup must be an int or a float, got {warmup!r}")
    if isinstance(warmup, (int, np.integer)):
        if warmup < 0:
            raise ValueError(f"warmup epochs must be >= 0, got {warmup!r}")
        return min(int(warmup), n_epochs)
    fraction = float(warmup)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"a warmup fraction must be in [0, 1), got {warmup!r}")
    if fraction == 0.0:
        return 0
    return min(max(1, math.ceil(fraction * n_epochs)), n_epochs)


def volatility(train_loss: Sequence[float], warmup: float | int = 0.2) -> float:
    """How much the training loss fluctuates from epoch to epoch, after warm-up.

    The statistic is `noise_scale` of the log loss after warm-up: 1.4826 x the median
    |x[t+1] - 2 x[t] + x[t-1]| / sqrt(6), x = log loss. Why this one:

    - Log loss: fluctuations are read relative to the loss (1% of 2.0 = 1% of 0.02).
    - Second differences cancel a locally straight trend of the log loss, so a steady decrease
      (a constant percentage per epoch, or a slowly bending curve) scores ~0 and a jagged
      curve scores high. The median absolute change between consecutive epochs, the simpler
      choice, would count a steady decrease as fluctuation.
    - The median ignores a few spiking epochs: one bad epoch does not make a run volatile.
    - The constants make it an estimate of the standard deviation of independent per-epoch
      noise of the log loss: multiplicative noise of sd 0.02 scores ~0.02, "the loss jitters
      by about 2% per epoch", comparable across runs, tasks and loss scales.

    Warm-up skips the first part of training, where the loss falls fast and bends sharply.
    A second difference is used only where its 3 consecutive epochs are all finite and
    positive (NaN, inf and <= 0 epochs are left out and never raise). At least
    MIN_VOLATILITY_DIFFS (5) usable second differences are needed, else the result is NaN:
    at least 7 finite epochs after warm-up (9 epochs in all with the default 20% warm-up).

    Args:
        train_loss: training loss per epoch.
        warmup: epochs to skip (int), or a fraction of the run's epochs (float in [0, 1),
            rounded up, at least 1 epoch when positive); default 0.2, the first 20%.

    Returns:
        The volatility (>= 0), or NaN with too few usable epochs.

    Raises:
        ValueError: for a warmup out of range.
    """
    values = np.asarray(train_loss, dtype=float).ravel()
    values = values[warmup_epochs(values.size, warmup) :]
    usable = np.isfinite(values) & (values > 0)
    x = np.log(np.where(usable, values, 1.0))  # placeholder 1.0: those epochs are masked out
    second = x[2:] - 2.0 * x[1:-1] + x[:-2]
    valid = usable[2:] & usable[1:-1] & usable[:-2]
    if int(valid.sum()) < MIN_VOLATILITY_DIFFS:
        return math.nan
    return _robust_sd(second[valid])
