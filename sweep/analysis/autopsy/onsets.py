"""Where each mechanism of a collapse begins in one run's curves (pure numpy; epochs from 1).

Every signal is judged against its own noise: at epoch e, its level is the median of the
epochs just before (up to LEVEL_EPOCHS) and its noise the robust epoch-to-epoch scale of all the
epochs before (`noise_scale`: 1.4826 x median |second difference| / sqrt(6), as the loss-jump
detector reads the loss; never below the signal's FLOOR, which stands in for the noise while
too few epochs are there to measure it). A signal "rose" at e when its value there exceeds the
level by more than Z (3) noise scales and by its minimum size, and the epoch before by half that
minimum (a sudden rise, not the latest epoch of a steady climb such as early training's).
Positive signals (gradient norms, update ratios, the lr over the critical step) are read on a
log scale, so a rise is a factor; the logits' log-sum-exp is a log already; shares (saturation,
the top class's share) are read on their own scale.

Usage::

    found = onsets(curves)                  # {mechanism: [Onset, ...]} for every epoch
    first = first_onset(curves, "gradient_cliff", lo=8, hi=14)   # the first in epochs 8..14

The mechanisms (docs/why-it-collapsed.md gives the rules and their sources):

- gradient_cliff: grad_norm_max rose by more than CLIFF_MIN x and its noise, and either its
  ratio to grad_norm_mean rose by SPIKE_MIN x over that ratio's level (a few steps far above the
  epoch's others) or the mean rose by CLIFF_MIN x and its noise as well (the whole epoch):
  gradients that grow together while a run learns are not a cliff (a run that logged no mean is
  judged on its max alone).
- step_too_large: the lr itself rose (x2 or more from one epoch to the next: a schedule, a
  restart); or the update/weight ratio rose by STEP_MIN x and its noise, and the update per unit
  of gradient (update_ratio / grad_norm_mean) by STEP_PER_GRAD x and its noise (a larger step
  that a larger gradient does not explain); or lr / crit_lr rose by CRIT_MIN x and its noise to
  at least 4 (the step taken overshot even at a quarter of its size), and stayed there the next
  epoch (crit_lr is read on one batch: a single epoch's outlier does not count; and a step that
  overshoots at half its size is the edge of stability that stable runs train at).
- saturation: sat_frac rose by SAT_MIN and its noise, and either the gradient norm fell by
  GRAD_FALL x below its level within FALL_EPOCHS epochs (units that no longer pass a gradient) or
  a quarter of every gate and unit is saturated (SAT_HIGH), while the training loss did not fall
  by LOSS_FALL x (gradients that vanish because the loss was fitted are not units stuck: the
  labels all set to one class pin the units that way).
- output_collapse: the top class's share of predictions rose by TOP_MIN and its noise to at least
  TOP_LEVEL, and the logits' log-sum-exp rose by LSE_MIN and its noise by then.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sweep.analysis.shapes.curves import noise_scale
from sweep.core.values import median

LEVEL_EPOCHS = 5  # the level before an epoch: the median of up to this many epochs before it
MIN_HISTORY = 2  # epochs needed before an onset can be judged
Z = 3.0  # noise scales a rise must clear

CLIFF_MIN = math.log(8.0)  # gradient_cliff: grad_norm_max at least x8 its level ...
CLIFF_FLOOR = 0.4  # ... and its noise never taken below this (log units: x1.5 per epoch) ...
SPIKE_MIN = math.log(2.0)  # ... with grad_norm_max / grad_norm_mean up x2, or the mean up x8
LR_RISE = math.log(2.0)  # step_too_large: the lr itself up x2 from one epoch to the next; or
STEP_MIN = math.log(3.0)  # the update ratio up x3 ...
STEP_PER_GRAD = math.log(3.0)  # ... and the update per unit of gradient up x3; or
STEP_FLOOR = 0.25
CRIT_MIN = math.log(4.0)  # lr / crit_lr up x4 over its level and its noise ...
CRIT_FLOOR = 0.5
CRIT_OVER = math.log(4.0)  # ... to at least 4: the step taken overshot at a quarter of its size
SAT_MIN = 0.10  # saturation: sat_frac up by at least 0.10 (10% of activations) ...
SAT_FLOOR = 0.02
GRAD_FALL = math.log(2.0)  # ... and the gradient norm down by x2 within FALL_EPOCHS epochs,
FALL_EPOCHS = 3
SAT_HIGH = 0.25  # ... or a quarter of every gate and unit saturated (too many to train back),
LOSS_FALL = math.log(2.0)  # ... while the training loss did not fall x2 within FALL_EPOCHS
TOP_MIN = 0.25  # output_collapse: the top class's share up by 0.25 ...
TOP_LEVEL = 0.5  # ... to at least half of the predictions ...
TOP_FLOOR = 0.03
LSE_MIN = 0.5  # ... with the logits' log-sum-exp up by 0.5 nats (x1.65 the top odds)
LSE_FLOOR = 0.1
MECHANISMS = ("step_too_large", "gradient_cliff", "saturation", "output_collapse")
# What each mechanism reads (a run without one of these cannot show it: `missing_signals`).
NEEDS = {
    "gradient_cliff": ("grad_norm_max", "grad_norm_mean"),
    "step_too_large": ("update_ratio", "grad_norm_mean", "crit_lr", "epoch_lr"),
    "saturation": ("sat_frac", "grad_norm_mean", "train_loss"),
    "output_collapse": ("pred_top_frac", "logit_lse"),
}
SIGNALS = ("grad_norm_max", "update_ratio", "crit_lr", "sat_frac", "pred_top_frac", "logit_lse")


@dataclass(frozen=True)
class Onset:
    """Where a mechanism began: its epoch, its size (a factor, or a rise in share) and a short
    statement of the evidence, e.g. "grad_norm_max x41 over its level"."""

    mechanism: str
    epoch: int
    size: float
    evidence: str


def _array(curves: Mapping[str, Sequence[float]], name: str, n: int) -> np.ndarray:
    values = curves.get(name)
    if values is None:
        return np.full(n, np.nan)
    out = np.asarray(values, dtype=float)
    return out[:n] if len(out) >= n else np.concatenate([out, np.full(n - len(out), np.nan)])


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(x) & (x > 0), np.log(np.where(x > 0, x, 1.0)), np.nan)


def rises(x: np.ndarray, floor: float, minimum: float) -> np.ndarray:
    """Per epoch, how far x rose over its level (NaN where it did not clear its noise and its
    minimum, or where too little came before). Epochs with a NaN are skipped (and not counted as
    history). Only the epochs that rose suddenly are looked at closely: a report reads every
    collapsed run of a study."""
    out = np.full(len(x), np.nan)
    where = np.flatnonzero(np.isfinite(x))
    v = x[where]
    if len(v) <= MIN_HISTORY:
        return out
    sudden = np.flatnonzero(v[1:] - v[:-1] >= minimum / 2) + 1  # not the tail of a steady climb
    for j in sudden[sudden >= MIN_HISTORY]:
        before = v[:j]
        step = float(v[j]) - median(before[-LEVEL_EPOCHS:])
        if step < max(Z * floor, minimum):
            continue
        noise = noise_scale(before) if len(before) >= 4 else 0.0
        if step >= max(Z * max(noise, floor), minimum):
            out[where[j]] = step
    return out


def level_before(x: np.ndarray, i: int) -> float:
    before = x[:i][np.isfinite(x[:i])]
    return median(before[-LEVEL_EPOCHS:]) if len(before) else math.nan


def onsets(curves: Mapping[str, Sequence[float]]) -> dict[str, list[Onset]]:
    """Every epoch where each mechanism's rule holds, in epoch order."""
    n = max((len(v) for v in curves.values()), default=0)
    g_max = _log(_array(curves, "grad_norm_max", n))
    g_mean = _log(_array(curves, "grad_norm_mean", n))
    upd = _log(_array(curves, "update_ratio", n))
    crit = _array(curves, "crit_lr", n)
    lr = _array(curves, "epoch_lr", n)
    sat = _array(curves, "sat_frac", n)
    top = _array(curves, "pred_top_frac", n)
    lse = _array(curves, "logit_lse", n)  # a log already: its rises are factors of the odds
    found: dict[str, list[Onset]] = {m: [] for m in MECHANISMS}

    cliff = rises(g_max, CLIFF_FLOOR, CLIFF_MIN)
    # A cliff is a few steps' gradients far above the rest of the epoch's (the max rose more than
    # the mean), or the whole epoch's as far above the level; not the growth of every step's
    # gradient while a run learns (max and mean rising together by a few x).
    spread = g_max - g_mean
    spiky = np.array([spread[i] - level_before(spread, i) >= SPIKE_MIN for i in range(n)])
    spiky |= ~np.isfinite(g_mean)  # a log without the mean: the max alone decides
    broad = rises(g_mean, CLIFF_FLOOR, CLIFF_MIN)
    for i in np.flatnonzero(np.isfinite(cliff) & (spiky | np.isfinite(broad))):
        found["gradient_cliff"].append(
            Onset("gradient_cliff", i + 1, math.exp(cliff[i]), f"grad_norm_max x{_x(cliff[i])}")
        )

    log_lr = _log(lr)
    step = rises(upd, STEP_FLOOR, STEP_MIN)
    per_grad = rises(upd - g_mean, STEP_FLOOR, STEP_PER_GRAD)
    over = _log(lr / crit)  # > 0: the lr is past the critical step
    past = rises(over, CRIT_FLOOR, CRIT_MIN)
    for i in range(n):
        lr_up = log_lr[i] - log_lr[i - 1] if i else math.nan
        if np.isfinite(lr_up) and lr_up >= LR_RISE:
            found["step_too_large"].append(
                Onset("step_too_large", i + 1, math.exp(lr_up), f"the lr x{_x(lr_up)}")
            )
        elif np.isfinite(step[i]) and np.isfinite(per_grad[i]):
            found["step_too_large"].append(
                Onset("step_too_large", i + 1, math.exp(step[i]), f"update_ratio x{_x(step[i])}")
            )
        elif np.isfinite(past[i]) and over[i] >= CRIT_OVER and _held(over, i, CRIT_OVER):
            found["step_too_large"].append(
                Onset("step_too_large", i + 1, math.exp(over[i]), f"lr {_x(over[i])}x crit_lr")
            )

    sat_up = rises(sat, SAT_FLOOR, SAT_MIN)
    train = _log(_array(curves, "train_loss", n))
    for i in np.flatnonzero(np.isfinite(sat_up)):
        if not _stuck(train, i):
            continue  # the loss kept falling: units pinned by fitting, not stuck in saturation
        level = level_before(g_mean, i)
        later = g_mean[i : i + FALL_EPOCHS]
        fell = (
            np.isfinite(level)
            and np.isfinite(later).any()
            and (level - np.nanmin(later) >= GRAD_FALL)
        )
        if fell or sat[i] >= SAT_HIGH:
            found["saturation"].append(
                Onset(
                    "saturation",
                    i + 1,
                    float(sat[i]),
                    f"sat_frac {level_before(sat, i):.2f} -> {sat[i]:.2f}"
                    + (", gradients fell" if fell else ""),
                )
            )

    top_up = rises(top, TOP_FLOOR, TOP_MIN)
    lse_up = rises(lse, LSE_FLOOR, LSE_MIN)
    for i in np.flatnonzero(np.isfinite(top_up) & (top >= TOP_LEVEL)):
        if np.isfinite(lse_up[max(0, i - 1) : i + 1]).any():
            found["output_collapse"].append(
                Onset(
                    "output_collapse",
                    i + 1,
                    float(top[i]),
                    f"pred_top_frac {level_before(top, i):.2f} -> {top[i]:.2f} as logit_lse rose",
                )
            )
    return found


def _stuck(log_loss: np.ndarray, i: int) -> bool:
    """The training loss did not fall by LOSS_FALL x from its level within FALL_EPOCHS epochs of
    epoch i (true when the run recorded no training loss)."""
    level = level_before(log_loss, i)
    later = log_loss[i : i + FALL_EPOCHS]
    if not (np.isfinite(level) and np.isfinite(later).any()):
        return True
    return bool(level - np.nanmin(later) < LOSS_FALL)


def _held(x: np.ndarray, i: int, level: float) -> bool:
    """x stayed at or above `level` in epoch i and the epoch after it (a one-batch outlier of the
    critical step does not count); the last epoch of a run has none after it to confirm it."""
    return i + 1 < len(x) and bool(np.isfinite(x[i + 1]) and x[i + 1] >= level)


def _x(log_factor: float) -> str:
    """A factor for people: x4.2, x41."""
    f = math.exp(log_factor)
    return f"{f:.1f}" if f < 10 else f"{f:.0f}"


def missing_signals(curves: Mapping[str, Sequence[float]]) -> list[str]:
    """The signals the run did not record (absent, or NaN in every epoch)."""
    out = []
    for name in SIGNALS:
        values = curves.get(name)
        if values is None or not np.isfinite(np.asarray(values, dtype=float)).any():
            out.append(name)
    return out
