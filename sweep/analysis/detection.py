"""Collapse detection on one run's per-epoch curves (pure functions; docs/architecture.md,
"Definitions").

Usage::

    v = detect_run(val_acc, val_loss, pred_top_frac, nonfinite_epoch, chance, cfg.detect,
                   n_val=450, val_loss_sd=sd)
    v.outcome            # "stable", "collapsed", "undecided" or "never_learned"
    v.collapsed, v.collapse_mode, v.collapse_epoch, v.best_acc, v.spikes, v.noise_floor

Epochs are counted from 1. Modes: `nonfinite` (NaN/inf anywhere), `diverged` (learned, then fell
below chance + (1 - drop) * (best - chance) and stayed there for the last >= patience epochs),
`constant_output` (a diverged run whose final predictions are almost all one class).

Sampling noise (`n_val`, the validation sequences each accuracy was measured on; `sweep.analysis.noise`):
the fixed gaps `min_gain` and `drop` are floors, and every call must also clear the noise that
n_val items imply, at the false-alarm budget `detect.alpha`:

- learned: the best accuracy reaches the noise floor, the accuracy that the best of this run's
  epochs stays below with probability 1 - alpha/2 when nothing is learned (binomial at chance,
  Bonferroni over the epochs), and chance + min_gain. Otherwise the run is `never_learned`:
  nothing it did stands out from guessing.
- diverged: the final stretch is below the threshold, and by more than its own noise: the
  one-sided (1 - alpha) Wilson upper bound of the stretch's mean accuracy (with one epoch's
  noise) lies below the threshold. Where accuracy alone cannot tell, validation loss is the second witness: the
  lowest loss of the final stretch above the loss at the best epoch by more than a one-sided
  (1 - alpha) t bound on their difference (standard errors from `val_loss_sd`, the spread of
  per-sequence losses). A drop neither witness confirms is `undecided`, not forced either way.
- `n_val=None` means noise-free measurements: the fixed gaps alone decide (the rule before
  noise was accounted for, kept for callers that know no validation size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sweep.analysis.noise import noise_floor, t_quantile, wilson_upper
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


def final_stretch_start(val_acc: Sequence[float], threshold: float) -> int | None:
    """First epoch of the final stretch below `threshold` (NaN counts as below), or None."""
    acc = _array(val_acc)
    above = np.isfinite(acc) & (acc >= threshold)
    if not len(acc) or above[-1]:
        return None
    hits = np.flatnonzero(above)
    return int(hits[-1]) + 2 if hits.size else 1


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


def drop_is_real(
    val_acc: Sequence[float], start: int, threshold: float, n_val: int | None, alpha: float
) -> bool:
    """Does the final stretch (epochs start..end) lie below `threshold` by more than its noise?

    Its mean accuracy's one-sided (1 - alpha) Wilson upper bound on n_val items must be below
    the threshold: the noise of one epoch's measurement, not of the mean of several (the epochs
    share their validation items, so averaging them removes less noise than independent draws
    would). Epochs without a finite accuracy count as 0 (the model stopped producing usable
    outputs).
    """
    if not n_val:
        return True
    stretch = _array(val_acc[start - 1 :])
    mean = float(np.where(np.isfinite(stretch), stretch, 0.0).mean())
    return wilson_upper(mean * n_val, int(n_val), alpha) < threshold


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
    start = final_stretch_start(val_acc, threshold)
    if start is None or len(val_acc) - start + 1 < detect.patience:
        return RunVerdict(
            collapsed=False,
            collapse_epoch=None,
            collapse_mode="",
            never_learned=False,
            outcome="stable",
            **verdict,
        )
    if drop_is_real(val_acc, start, threshold, n_val, _alpha(detect)):
        witness = "accuracy"
    elif loss_rise_is_real(val_loss, val_loss_sd, best_epoch, start, n_val, _alpha(detect)):
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
