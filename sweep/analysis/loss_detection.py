"""Collapse calls from a loss curve alone (issue 27): trainings without a meaningful accuracy
(seq2seq, autoencoders, language models, regression, no validation set). Pure functions.

Usage::

    v = detect_loss_run(val_loss, detect=cfg.detect, chance_loss=2.303)   # or train_loss
    v.outcome        # "stable", "collapsed", "undecided" or "never_learned" (detection.OUTCOMES)
    v.collapsed, v.collapse_mode, v.collapse_epoch, v.best_loss, v.reference, v.noise

The same vocabulary and standards as the accuracy calls (`sweep.analysis.detection`); epochs
count from 1. The rules:

- `nonfinite`: `nonfinite_epoch` (the trainer saw a NaN/inf), else the first epoch whose loss is
  +-inf, or from which every logged loss is NaN to the end (a NaN followed by finite epochs is a
  missing measurement, not a blow-up).
- The reference, the loss of knowing nothing (`loss_reference`): `chance_loss` when it is known
  (for cross-entropy, the entropy of the label frequencies; for a mean squared error, the
  targets' variance), else the run's first finite logged loss.
- never learned (`loss_learned`): the run's lowest *level* (the lowest median of 5 consecutive
  epochs, 3 on a curve of fewer than 15: one or two lucky epochs are not a level) is not below
  the reference by more than noise (z at alpha/2, Bonferroni over the windows), or not by
  `detect.loss_min_gain` of it. A reference read off the curve is one noisy epoch: its own
  noise is added at the alpha/4 quantile of a heavy-tailed (Student-t, 3 df) epoch, so one
  outlying first epoch is not learning.
- `diverged`: after its best epoch the loss rose above the threshold best + drop x (reference -
  best) and its level stayed above it to the end, judged with its noise: the final stretch of
  `sweep.analysis.stretch` on the log loss (mirrored: "below" there is "above" here), its level
  the geometric mean of its epochs, confirmed when the level's one-sided (1 - alpha) lower bound
  is above the threshold and the run's lowest level stands out below the stretch's by more than
  noise moves the lowest of its levels at alpha/2. A stretch above the threshold that the noise
  cannot confirm is `undecided`.

Noise. A loss has no binomial formula, so its noise is read from what was logged, on the log
of the loss (a loss's noise is roughly proportional to it; `noise` is then a share: 0.02 reads
"the loss jitters by about 2% per epoch"). The epoch-to-epoch scatter around a smooth trend is
`sweep.analysis.stretch.scatter` (the robust second-difference estimator of
`sweep.analysis.shapes.noise_scale`, the jump into the stretch left out); a final stretch is
judged with the smaller of that and its own epochs' scatter (`stretch_scatter`: on a short curve
the fall and the jump are most of the second differences), the learned test with the curve's.
Where the spread of the items behind each epoch's loss is logged (`loss_sd`, per epoch, over
`n_items` items: the validation sequences, or the steps of a training epoch), one epoch's item
noise is the median of (sd / sqrt(n_items) / loss)^2, shared by the epochs at most (as the
accuracy's binomial noise is). A curve with a loss <= 0 (a log-likelihood of continuous data,
say) is read in loss units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.special import ndtri, stdtrit

from sweep.analysis.detection import count_spikes
from sweep.analysis.stretch import Stretch, StretchNoise, final_stretch, scatter
from sweep.config import DetectConfig

# The lowest level is the lowest median of this many consecutive epochs (3 of them must agree:
# one or two outlying epochs, which heavy-tailed noise makes common, are not a level).
LEVEL_EPOCHS = 5
# On a curve of fewer than this many epochs, 5 epochs are a third of it or more: a run that
# learned for 2 or 3 epochs before it collapsed has no level of 5, so a level is the median of
# 3 (2 of them must agree). Measured: no more false "learned" at 6 to 12 epochs of noise alone.
SHORT_CURVE = 15
SHORT_LEVEL_EPOCHS = 3
# A Student-t(3) value over its robust sd (1.4826 x its median absolute value, 0.7649): the
# reference read off the curve is one epoch, whose noise may have heavy tails.
_T3_PER_ROBUST_SD = 1.0 / (1.4826 * 0.7649)
# Variance of the median of k independent normal values, in units of one value's.
_MEDIAN_VAR = {1: 1.0, 2: 0.5, 3: 0.4487, 4: 0.2977, 5: 0.2868}


@dataclass(frozen=True)
class LossVerdict:
    """One run's calls from its loss curve.

    Attributes:
        best_loss: lowest finite loss (NaN when none).
        best_epoch: its first epoch (None when none).
        final_loss: the last epoch's loss (NaN if not finite).
        collapsed, collapse_epoch, collapse_mode: as for the accuracy ("", "nonfinite" or
            "diverged").
        never_learned: the loss never came below the reference by more than noise.
        outcome: one of detection.OUTCOMES.
        spikes: epochs above spike_factor x the lowest loss before, later recovered from.
        reference: the loss of knowing nothing that the calls used (`loss_reference`).
        noise: sd of one epoch's noise: of log(loss) (a share, 0.02 = 2%) when `scale` is "log",
            in loss units when "linear"; NaN when the curve was too short to tell.
        threshold: best + drop x (reference - best), NaN when not reached.
        witness: "loss" for a diverged call.
        scale: "log", or "linear" for a curve holding a loss <= 0.
        stretch_level: the final stretch's level (geometric mean in log scale), NaN if none.
        stretch_bound: its one-sided (1 - alpha) lower bound.
    """

    best_loss: float
    best_epoch: int | None
    final_loss: float
    collapsed: bool
    collapse_epoch: int | None
    collapse_mode: str
    never_learned: bool
    outcome: str
    spikes: int
    reference: float
    noise: float
    threshold: float
    witness: str = ""
    scale: str = "log"
    stretch_level: float = math.nan
    stretch_bound: float = math.nan

    @property
    def undecided(self) -> bool:
        return self.outcome == "undecided"


def _array(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=float).ravel()  # (None -> NaN)


def loss_reference(loss: Sequence[float], chance_loss: float | None = None) -> float:
    """The loss of knowing nothing: `chance_loss` when given and finite, else the first finite
    logged loss (NaN when there is none)."""
    if chance_loss is not None and math.isfinite(float(chance_loss)):
        return float(chance_loss)
    x = _array(loss)
    finite = x[np.isfinite(x)]
    return float(finite[0]) if finite.size else math.nan


def nonfinite_start(loss: Sequence[float]) -> int | None:
    """First epoch (from 1) whose loss is +-inf, or from which every loss is NaN to the end."""
    x = _array(loss)
    if not x.size:
        return None
    candidates = [int(i) + 1 for i in np.flatnonzero(np.isinf(x))[:1]]
    if not np.isfinite(x[-1]):
        finite = np.flatnonzero(np.isfinite(x))
        candidates.append(int(finite[-1]) + 2 if finite.size else 1)
    return min(candidates) if candidates else None


@dataclass(frozen=True)
class _Curve:
    """The finite epochs of a loss curve on the scale the calls read (log, or loss units)."""

    epochs: np.ndarray  # 1-based epoch of each finite value
    loss: np.ndarray  # the finite losses
    x: np.ndarray  # log(loss), or loss on the linear scale
    log: bool
    item_var: float  # one epoch's item noise (variance, on that scale); 0 when not logged

    def to_scale(self, value: float) -> float:
        return math.log(value) if self.log else value

    def from_scale(self, value: float) -> float:
        return math.exp(value) if self.log else value


def _curve(loss: Sequence[float], loss_sd: Sequence[float] | None, n_items: int | None) -> _Curve:
    y = _array(loss)
    keep = np.isfinite(y)
    finite = y[keep]
    log = bool(finite.size) and bool((finite > 0).all())
    item_var = 0.0
    if loss_sd is not None and n_items and int(n_items) > 0:
        sd = _array(loss_sd)[: y.size]
        se = sd / math.sqrt(int(n_items))
        rel = se / np.abs(y[: sd.size]) if log else se
        rel = rel[np.isfinite(rel)]
        item_var = float(np.median(rel) ** 2) if rel.size else 0.0
    x = np.log(finite) if log else finite
    return _Curve(np.flatnonzero(keep) + 1, finite, x, log, item_var)


def _noise(curve: _Curve) -> StretchNoise:
    """The curve's noise for the calls: the scatter's 90% upper bound (`Scatter.upper`; a short
    curve's scatter is known poorly, and a heavy-tailed one's robust estimate is low), the
    estimate itself for the come-back test, and the item noise when it was logged. A final
    stretch is judged with its own scatter where that is smaller (`per_stretch`)."""
    spread = scatter(curve.x)
    item = curve.item_var
    return StretchNoise(
        scatter=spread.upper(),
        item_var=(lambda level: np.full(np.shape(level), item)) if item > 0 else None,
        diffs=spread.diffs,
        back_scatter=spread.sd,
        per_stretch=True,
        curve_upper=True,
    )


def _epoch_sd(noise: StretchNoise) -> float:
    """One epoch's noise sd: max(item, scatter); NaN when neither is known."""
    item = 0.0 if noise.item_var is None else float(noise.item_var(np.asarray(0.0)))
    s2 = noise.scatter**2 if math.isfinite(noise.scatter) else math.nan
    if math.isnan(s2):
        return math.sqrt(item) if item > 0 else math.nan
    return math.sqrt(max(item, s2))


def _lowest_level(x: np.ndarray) -> tuple[float, int]:
    """(the lowest median of LEVEL_EPOCHS consecutive values, SHORT_LEVEL_EPOCHS on a curve of
    fewer than SHORT_CURVE epochs; the window length used)."""
    k = min(LEVEL_EPOCHS if x.size >= SHORT_CURVE else SHORT_LEVEL_EPOCHS, x.size)
    windows = np.lib.stride_tricks.sliding_window_view(x, k)
    return float(np.median(windows, axis=1).min()), k


def _learned(
    curve: _Curve, reference: float, from_chance: bool, noise: StretchNoise, detect: Any
) -> bool:
    """The learned test (module docstring) on a prepared curve."""
    if not curve.x.size or not math.isfinite(reference):
        return False
    if curve.log and reference <= 0:
        return False
    ref = curve.to_scale(reference)
    level, k = _lowest_level(curve.x)
    gain = float(getattr(detect, "loss_min_gain", DetectConfig.loss_min_gain))
    floor = (1.0 - gain) * reference if curve.log else reference - gain * abs(reference)
    if curve.from_scale(level) > floor:
        return False
    sd = _epoch_sd(noise)
    if not math.isfinite(sd):  # too short to tell the noise: the floor alone decides
        return True
    # the level's noise (a median of k epochs) and, for a reference read off the curve, its own
    windows = max(curve.x.size - k + 1, 1)
    alpha = float(getattr(detect, "alpha", DetectConfig.alpha)) / 2
    margin = float(ndtri(1.0 - alpha / windows)) * sd * math.sqrt(_MEDIAN_VAR[k])
    if not from_chance:  # a reference read off the curve is one epoch, and noisy: heavy-tailed
        margin += _T3_PER_ROBUST_SD * float(stdtrit(3, 1.0 - alpha / 2)) * sd
    return ref - level > margin


def loss_learned(
    loss: Sequence[float],
    *,
    detect: Any,
    chance_loss: float | None = None,
    loss_sd: Sequence[float] | None = None,
    n_items: int | None = None,
) -> bool:
    """Did the loss clearly learn: is its lowest level below the loss of knowing nothing by more
    than noise (and by detect.loss_min_gain of it)? The epochs after a non-finite value are not
    read."""
    y = _array(loss)
    bad = nonfinite_start(y)
    if bad is not None:
        y = y[: bad - 1]
    curve = _curve(y, loss_sd, n_items)
    reference = loss_reference(y, chance_loss)
    known = chance_loss is not None and math.isfinite(float(chance_loss))
    if not curve.x.size:
        return False
    return _learned(curve, reference, known, _noise(curve), detect)


def _stands_out(curve: _Curve, stretch: Stretch, noise: StretchNoise, alpha: float) -> bool:
    """The run's lowest level (`_lowest_level`) lies below the stretch's level by more than
    z(alpha / windows) sds of (a level - the stretch's mean): a threshold set by lucky epochs
    calls nothing."""
    sd = _epoch_sd(noise)
    if not math.isfinite(sd):
        return True  # (too short to tell the noise: the fixed gaps decide)
    lowest, k = _lowest_level(curve.x)
    s2 = noise.scatter**2 if math.isfinite(noise.scatter) else 0.0
    spread = math.sqrt(_MEDIAN_VAR[k] * sd**2 + s2 / stretch.epochs)
    windows = max(curve.x.size - k + 1, 1)
    level = -stretch.level  # (the stretch was found on the mirrored curve)
    return level - lowest > float(ndtri(1.0 - alpha / windows)) * spread


def _diverged_stretch(
    curve: _Curve, threshold: float, best_index: int, detect: Any
) -> tuple[Stretch | None, StretchNoise]:
    """The final stretch above `threshold` after the best epoch (index into the finite epochs),
    and the noise that judges the run: the curve's, with the stretch's scatter where there is
    one (`sweep.analysis.stretch.stretch_scatter`: the curve's without the jump into it, or the
    stretch's own epochs' where smaller; on a short curve the rise and the jump are most of its
    second differences)."""
    noise = _noise(curve)
    if not math.isfinite(threshold) or not curve.x.size:
        return None, noise
    alpha = float(getattr(detect, "alpha", DetectConfig.alpha))
    recover = float(getattr(detect, "recover_alpha", DetectConfig.recover_alpha))
    stretch = final_stretch(
        -curve.x,
        -curve.to_scale(threshold),
        first=best_index + 1,
        patience=int(detect.patience),
        noise=noise,
        z=float(ndtri(1.0 - alpha)),
        z_back=float(ndtri(1.0 - recover)),
    )
    if stretch is None or not math.isfinite(stretch.scatter):
        return stretch, noise
    return stretch, replace(noise, scatter=stretch.scatter)


def _threshold(best: float, reference: float, detect: Any) -> float:
    """best + drop x (reference - best); NaN where the loss cannot be read on its scale."""
    if not (math.isfinite(best) and math.isfinite(reference)) or reference <= best:
        return math.nan
    return best + float(detect.drop) * (reference - best)


def detect_loss_run(
    loss: Sequence[float],
    *,
    detect: Any,
    nonfinite_epoch: int | None = None,
    chance_loss: float | None = None,
    loss_sd: Sequence[float] | None = None,
    n_items: int | None = None,
) -> LossVerdict:
    """Classify one run from its loss curve (module docstring).

    Args:
        loss: the loss per epoch (validation loss when logged, else training loss).
        detect: the detect config (drop, patience, alpha, recover_alpha, loss_min_gain,
            spike_factor).
        nonfinite_epoch: the epoch where the trainer saw a NaN/inf (None: read off the curve).
        chance_loss: the loss of knowing nothing, when known (else the first logged loss).
        loss_sd: per epoch, the sd of the items' losses behind it (validation sequences, or a
            training epoch's step losses); with n_items, it adds the item noise.
        n_items: the number of items behind each epoch's loss (sequences, or steps per epoch).
    """
    y = _array(loss)
    final = float(y[-1]) if y.size and math.isfinite(y[-1]) else math.nan
    spikes = count_spikes(y, float(getattr(detect, "spike_factor", DetectConfig.spike_factor)))
    bad = nonfinite_epoch if nonfinite_epoch is not None else nonfinite_start(y)
    readable = y if bad is None else y[: max(int(bad) - 1, 0)]
    curve = _curve(readable, loss_sd, n_items)
    reference = loss_reference(readable, chance_loss)
    if curve.x.size:
        i = int(np.argmin(curve.loss))
        best, best_epoch = float(curve.loss[i]), int(curve.epochs[i])
    else:
        i, best, best_epoch = -1, math.nan, None
    threshold = _threshold(best, reference, detect)
    stretch, noise = _diverged_stretch(curve, threshold, i, detect)
    common = dict(
        best_loss=best,
        best_epoch=best_epoch,
        final_loss=final,
        spikes=spikes,
        reference=reference,
        noise=_epoch_sd(noise),
        scale="log" if curve.log or not curve.x.size else "linear",
    )
    calm = dict(collapsed=False, collapse_epoch=None, collapse_mode="")
    if bad is not None:
        return LossVerdict(
            collapsed=True,
            collapse_epoch=int(bad),
            collapse_mode="nonfinite",
            never_learned=False,
            outcome="collapsed",
            threshold=math.nan,
            **common,
        )
    known = chance_loss is not None and math.isfinite(float(chance_loss))
    whole = _noise(curve)  # (the learned test reads the curve's noise: see _noise)
    if not _learned(curve, reference, known, whole, detect):
        common["noise"] = _epoch_sd(whole)
        return LossVerdict(
            never_learned=True, outcome="never_learned", threshold=math.nan, **calm, **common
        )
    if stretch is None:
        return LossVerdict(
            never_learned=False, outcome="stable", threshold=threshold, **calm, **common
        )
    levels = dict(
        stretch_level=curve.from_scale(-stretch.level),
        stretch_bound=curve.from_scale(-stretch.bound),
    )
    alpha = float(getattr(detect, "alpha", DetectConfig.alpha))
    if not (stretch.confirmed and _stands_out(curve, stretch, noise, alpha / 2)):
        return LossVerdict(
            never_learned=False,
            outcome="undecided",
            threshold=threshold,
            **calm,
            **common,
            **levels,
        )
    return LossVerdict(
        collapsed=True,
        collapse_epoch=int(curve.epochs[stretch.start - 1]),
        collapse_mode="diverged",
        never_learned=False,
        outcome="collapsed",
        threshold=threshold,
        witness="loss",
        **common,
        **levels,
    )
