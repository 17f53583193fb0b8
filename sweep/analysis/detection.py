"""Collapse detection on one run's per-epoch curves (pure functions; DESIGN.md "Definitions").

Usage::

    v = detect_run(val_acc, val_loss, pred_top_frac, nonfinite_epoch, chance, cfg.detect,
                   n_val=450, val_loss_sd=sd)
    v.outcome            # "stable", "collapsed", "undecided" or "never_learned"
    v.collapsed, v.collapse_mode, v.collapse_epoch, v.best_acc, v.spikes, v.noise_floor

Epochs are counted from 1. Modes: `nonfinite` (NaN/inf anywhere), `diverged` (learned, then its
level fell below chance + (1 - drop) * (best - chance) and stayed there to the end, for at least
`patience` epochs), `constant_output` (a diverged run whose final predictions are almost all one
class).

Sampling noise (`n_val`, the validation sequences each accuracy was measured on; `sweep.noise`):
the fixed gaps `min_gain` and `drop` are floors, and every call must also clear the noise that
n_val items imply, at the false-alarm budget `detect.alpha`:

- learned: the best accuracy reaches the noise floor, the accuracy that the best of this run's
  epochs stays below with probability 1 - alpha/2 when nothing is learned (binomial at chance,
  Bonferroni over the epochs), and chance + min_gain. Otherwise the run is `never_learned`:
  nothing it did stands out from guessing.
- diverged (issue 27): the run's *level* stays below the threshold, judged with its noise, not
  every epoch (`diverged_stretch`, `sweep.analysis.stretch`). The final stretch starts at the
  first epoch after the best, and after the run was last clearly back (the mean of its last
  epochs above the threshold with one-sided confidence 1 - recover_alpha), that is itself below
  the threshold, leaves at least `patience` epochs, and from which the mean accuracy to the end
  is below the threshold; `collapse_epoch` is that epoch. Accuracy confirms it when (1) the
  one-sided (1 - alpha) upper bound of the stretch's mean lies below the threshold: its item
  noise bounded by Wilson on an effective number of items that lets the stretch's epochs add up
  as far as their scatter shows fresh noise (they share their items: at most one epoch's
  binomial noise stays), the model's wander beyond it added as normal; and (2) the run's two
  best epochs both stand out from the stretch's level by more than noise lifts the best of its
  epochs at alpha/2 (`best_stands_out`: a threshold set by one lucky epoch calls nothing). The
  scatter in both is the stretch's (`sweep.analysis.stretch.stretch_scatter`): the curve's,
  or the 90% upper bound of the stretch's own epochs' where that is smaller. On a short run
  (8 epochs) the rise and the fall are most of the curve's second differences, and would
  otherwise count as noise.
  Where accuracy cannot tell, validation loss is the second witness: the lowest loss of the
  final stretch above the loss at the best epoch by more than a one-sided (1 - alpha) t bound on
  their difference (standard errors from `val_loss_sd`, the spread of per-sequence losses). A
  drop neither witness confirms is `undecided`, not forced either way.
- `n_val=None` means noise-free measurements: the fixed gaps alone decide, on the stretch's
  level (the run came back where the mean of its last epochs reaches the threshold).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.special import ndtri

from sweep.analysis.noise import noise_floor, t_quantile
from sweep.analysis.stretch import Stretch, StretchNoise, any_candidate, final_stretch, scatter
from sweep.config import DetectConfig

OUTCOMES = ("stable", "collapsed", "undecided", "never_learned")


@dataclass(frozen=True)
class RunVerdict:
    best_acc: float
    best_epoch: int | None
    final_acc: float
    collapsed: bool
    collapse_epoch: int | None
    collapse_mode: str  # "", "nonfinite", "diverged" or "constant_output"
    never_learned: bool
    spikes: int
    outcome: str = "stable"  # one of OUTCOMES
    noise_floor: float = math.nan  # what the learned test asked of the best accuracy
    witness: str = ""  # what confirmed a diverged call: "accuracy" or "loss"
    threshold: float = math.nan  # chance + (1 - drop) x (best - chance); NaN before it is needed
    stretch_level: float = math.nan  # mean accuracy of the final stretch (NaN: no stretch)
    stretch_bound: float = math.nan  # its one-sided (1 - alpha) upper bound
    noise: float = math.nan  # epoch-to-epoch scatter of the accuracy (sd, accuracy units)

    @property
    def undecided(self) -> bool:
        return self.outcome == "undecided"


def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _array(values: Sequence[float]) -> np.ndarray:
    """A curve as float64 (None -> NaN): detection runs for every run of a report, so its
    helpers are vectorised over epochs."""
    return np.asarray(values, dtype=float)  # (numpy reads None as NaN)


def best_accuracy(val_acc: Sequence[float], chance: float) -> tuple[float, int | None]:
    """(best accuracy, its epoch): the first epoch reaching the maximum finite accuracy.

    A run without any finite accuracy (non-finite in its first epoch) scores `chance`, what an
    untrained model gets, and has no best epoch.
    """
    acc = _array(val_acc)
    finite = np.isfinite(acc)
    if not finite.any():
        return float(chance), None
    i = int(np.argmax(np.where(finite, acc, -np.inf)))  # the first maximum
    return float(acc[i]), i + 1


def count_spikes(val_loss: Sequence[float], spike_factor: float) -> int:
    """Epochs whose val loss exceeds spike_factor x the lowest val loss of the epochs before,
    within stretches the run later recovers from (the last, unrecovered stretch is not counted)."""
    loss = _array(val_loss)
    if not len(loss):
        return 0
    finite = np.isfinite(loss)
    # The lowest finite loss before each epoch. A spike never lowers it (it lies above it), so
    # the minimum over every earlier finite epoch is the minimum over the earlier non-spikes.
    lowest = np.concatenate([[np.inf], np.fmin.accumulate(np.where(finite, loss, np.inf))[:-1]])
    spiking = ~finite | (
        np.isfinite(lowest) & (loss / spike_factor > lowest)
    )  # (no overflow near 1e308)
    recovered = np.flatnonzero(~spiking)
    return int(spiking[: recovered[-1]].sum()) if recovered.size else 0


def learned_floor(chance: float, epochs: int, n_val: int | None, detect: Any) -> float:
    """The best accuracy a run must reach to count as having learned: chance + min_gain, and,
    when the validation size is known, the noise floor of `epochs` evaluations (alpha / 2)."""
    floor = chance + detect.min_gain
    if n_val:
        floor = max(floor, noise_floor(int(n_val), float(chance), int(epochs), _alpha(detect) / 2))
    return floor


def _alpha(detect: Any) -> float:
    """detect.alpha; thresholds recorded before it existed get its default."""
    return float(getattr(detect, "alpha", DetectConfig.alpha))


def _recover_alpha(detect: Any) -> float:
    """detect.recover_alpha; thresholds recorded before it existed get its default."""
    return float(getattr(detect, "recover_alpha", DetectConfig.recover_alpha))


def accuracy_noise(val_acc: Sequence[float], n_val: int | None) -> StretchNoise:
    """The noise of an accuracy curve on n_val items: its epoch-to-epoch scatter (`scatter`; NaN
    with too few epochs), which reads returns, each final stretch being judged with its own
    (`per_stretch`, `sweep.analysis.stretch.stretch_scatter`), and one epoch's binomial variance
    p (1 - p) / n_val. `n_val=None`: noise-free."""
    if not n_val:
        return StretchNoise()
    n = int(n_val)

    def item_var(level: np.ndarray) -> np.ndarray:
        p = np.clip(level, 0.5 / n, 1.0 - 0.5 / n)  # (a level of 0 or 1 still has noise)
        return p * (1.0 - p) / n

    spread = scatter(_array(val_acc))
    return StretchNoise(scatter=spread.sd, item_var=item_var, diffs=spread.diffs, per_stretch=True)


def _wilson_upper(p: np.ndarray, n: np.ndarray, z: float) -> np.ndarray:
    """One-sided Wilson score upper bound of proportions p on (effective, fractional) n items."""
    z2 = z * z
    centre = p + z2 / (2 * n)
    half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return np.minimum((centre + half) / (1 + z2 / n), 1.0)


def _level_upper(
    level: np.ndarray, epochs: np.ndarray, spread: np.ndarray, item: np.ndarray, n: float, z: float
) -> np.ndarray:
    """One-sided upper bound of the mean accuracy of `epochs` epochs whose scatter is `spread`
    (NaN: unknown, the item noise taken as fully shared). The variance of the mean
    (`StretchNoise.mean_var`) has an item part, the shared item noise and the fresh item noise
    of each epoch, max(item - s^2, 0) + min(item, s^2) / L, bounded by Wilson on the effective
    number of items n x item / that part (a binomial is skewed near 0 and 1), and a wander part,
    max(s^2 - item, 0) / L, the model's own scatter beyond its item noise, added as normal: a
    Wilson bound on the few effective items a large wander leaves would skew it as if it were
    binomial."""
    s2 = np.where(np.isfinite(spread), spread, 0.0) ** 2
    known = np.isfinite(spread)
    items = np.where(known, np.maximum(item - s2, 0.0) + np.minimum(item, s2) / epochs, item)
    wander = np.where(known, np.maximum(s2 - item, 0.0) / epochs, 0.0)
    p = np.clip(level, 0.0, 1.0)
    half = _wilson_upper(p, n * item / items, z) - p
    return level + np.sqrt(half**2 + z * z * wander)


def diverged_stretch(
    val_acc: Sequence[float],
    threshold: float,
    best_epoch: int,
    n_val: int | None,
    detect: Any,
) -> Stretch | None:
    """The final stretch of an accuracy curve below `threshold` after its best epoch, judged with
    its noise (`sweep.analysis.stretch.final_stretch`; epochs without a finite accuracy count as
    0: the model stopped producing usable outputs).

    Its level's upper bound is `_level_upper` at one-sided 1 - alpha, with the stretch's scatter
    (`sweep.analysis.stretch.stretch_scatter`): one epoch's noise when the epochs share their
    items fully, less where their scatter shows fresh noise in each epoch. The run came back
    (the stretch restarts after it) where the mean of its last epochs is above the threshold
    with one-sided confidence 1 - recover_alpha. `n_val=None`: noise-free, the level alone
    decides (bound = level).
    """
    acc = _array(val_acc)
    values = np.where(np.isfinite(acc), acc, 0.0)
    if not any_candidate(values, threshold, best_epoch, int(detect.patience)):
        return None  # (most runs: no noise to measure)
    alpha = _alpha(detect)
    z = float(ndtri(1.0 - alpha))

    noise = accuracy_noise(acc, n_val)
    upper = None
    if n_val:
        n = float(n_val)

        def upper(level: np.ndarray, epochs: np.ndarray, spread: np.ndarray) -> np.ndarray:
            return _level_upper(level, epochs, spread, noise.item_var(level), n, z)

    return final_stretch(
        values,
        threshold,
        first=best_epoch,
        patience=int(detect.patience),
        noise=noise,
        z=z,
        z_back=float(ndtri(1.0 - _recover_alpha(detect))),
        upper=upper,
    )


def best_stands_out(
    val_acc: Sequence[float], stretch: Stretch, n_val: int | None, noise: StretchNoise, alpha: float
) -> bool:
    """Do the run's best epochs stand out from the final stretch's level m by more than noise
    alone would lift the best of its E evaluated epochs? A run that never moved (its best only
    the luckiest of many noisy epochs: random labels, or a run that learned a little) sets its
    threshold by that luck; this keeps it from being called diverged.

    The null: the same model at every epoch, at level m. Each epoch's noise, against the
    stretch's mean of L epochs, has sd sqrt(max(m (1 - m) / n_val, scatter^2) + scatter^2 / L)
    (one epoch's noise is at least binomial; shared item noise moves the epochs and the stretch
    alike). The two best epochs must both lie above m by more than z(alpha / E) sds
    (Bonferroni over the epochs), and reach the binomial noise floor at m (`noise_floor`: at
    small n_val the skew matters). Two epochs, not one: the learned test already asked the best
    epoch to be unlikely under noise, so a run that passed it by luck would pass again here with
    the same epoch; a second epoch that high is a peak, not one lucky epoch.

    Always true noise-free.
    """
    if not n_val:
        return True
    acc = _array(val_acc)
    top = np.sort(acc[np.isfinite(acc)])[::-1]
    epochs = top.size
    if epochs < 2:
        return False
    m = min(max(stretch.level, 0.0), 1.0)
    s2 = noise.scatter**2 if math.isfinite(noise.scatter) else 0.0
    sd = math.sqrt(noise.epoch_var(m) + s2 / stretch.epochs)
    # (the second best decides: it is never above the best)
    if top[1] - m < float(ndtri(1.0 - alpha / epochs)) * sd:
        return False
    return top[1] >= noise_floor(int(n_val), m, epochs, alpha) - 1e-9


def loss_rise_is_real(
    val_loss: Sequence[float],
    val_loss_sd: Sequence[float] | None,
    best_epoch: int,
    start: int,
    n_val: int | None,
    alpha: float,
) -> bool:
    """Validation loss as the second witness of a drop: the lowest loss of the final stretch is
    above the loss at the best epoch by more than a one-sided (1 - alpha) t bound, with each
    loss's standard error sd / sqrt(n_val) from the spread of per-sequence losses."""
    if not n_val or n_val < 2 or val_loss_sd is None or len(val_loss_sd) < len(val_loss):
        return False
    at_best, sd_best = val_loss[best_epoch - 1], val_loss_sd[best_epoch - 1]
    stretch = [(float(val_loss[e]), float(val_loss_sd[e])) for e in range(start - 1, len(val_loss))]
    if not (_finite(at_best) and _finite(sd_best)):
        return False
    if any(not (_finite(loss) and _finite(sd)) for loss, sd in stretch):
        return True  # the loss itself blew up in the stretch
    lowest, sd_low = min(stretch)
    se = math.sqrt((sd_best**2 + sd_low**2) / n_val)
    return lowest - at_best > t_quantile(int(n_val) - 1, alpha) * se


def detect_run(
    val_acc: Sequence[float],
    val_loss: Sequence[float],
    pred_top_frac: Sequence[float],
    nonfinite_epoch: int | None,
    chance: float,
    detect: Any,
    n_val: int | None = None,
    val_loss_sd: Sequence[float] | None = None,
) -> RunVerdict:
    """Classify one run. `detect` holds drop, patience, min_gain, spike_factor, constant_frac
    and alpha; `n_val` is the number of validation sequences (None: ignore sampling noise)."""
    val_acc, val_loss = _array(val_acc), _array(val_loss)
    best, best_epoch = best_accuracy(val_acc, chance)
    final = float(val_acc[-1]) if len(val_acc) and _finite(val_acc[-1]) else math.nan
    spikes = count_spikes(val_loss, detect.spike_factor)
    evaluated = int(np.isfinite(_array(val_acc)).sum())
    floor = learned_floor(chance, max(evaluated, 1), n_val, detect)
    verdict = dict(
        best_acc=best, best_epoch=best_epoch, final_acc=final, spikes=spikes, noise_floor=floor
    )
    if nonfinite_epoch is not None:
        return RunVerdict(
            collapsed=True,
            collapse_epoch=int(nonfinite_epoch),
            collapse_mode="nonfinite",
            never_learned=False,
            outcome="collapsed",
            **verdict,
        )
    if best < floor - 1e-9:  # (accuracies are k/n stored as float32)
        return RunVerdict(
            collapsed=False,
            collapse_epoch=None,
            collapse_mode="",
            never_learned=True,
            outcome="never_learned",
            **verdict,
        )
    threshold = chance + (1.0 - detect.drop) * (best - chance)
    verdict["threshold"] = threshold
    stretch = diverged_stretch(val_acc, threshold, int(best_epoch or 0), n_val, detect)
    if stretch is None:
        return RunVerdict(
            collapsed=False,
            collapse_epoch=None,
            collapse_mode="",
            never_learned=False,
            outcome="stable",
            **verdict,
        )
    # (the scatter that judged the stretch: the curve's, or its own epochs' where smaller)
    noise = replace(accuracy_noise(val_acc, n_val), scatter=stretch.scatter)
    verdict.update(stretch_level=stretch.level, stretch_bound=stretch.bound, noise=noise.scatter)
    alpha = _alpha(detect)
    start = stretch.start
    if stretch.confirmed and best_stands_out(val_acc, stretch, n_val, noise, alpha / 2):
        witness = "accuracy"
    elif loss_rise_is_real(val_loss, val_loss_sd, int(best_epoch or 0), start, n_val, alpha):
        witness = "loss"
    else:
        return RunVerdict(
            collapsed=False,
            collapse_epoch=None,
            collapse_mode="",
            never_learned=False,
            outcome="undecided",
            **verdict,
        )
    top = pred_top_frac[-1] if len(pred_top_frac) else math.nan
    mode = "constant_output" if _finite(top) and top >= detect.constant_frac else "diverged"
    return RunVerdict(
        collapsed=True,
        collapse_epoch=start,
        collapse_mode=mode,
        never_learned=False,
        outcome="collapsed",
        witness=witness,
        **verdict,
    )
