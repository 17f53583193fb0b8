"""Collapse detection on one run's per-epoch curves (pure functions; DESIGN.md "Definitions").

Usage::

    v = detect_run(val_acc, val_loss, pred_top_frac, nonfinite_epoch, chance, cfg.detect)
    v.collapsed, v.collapse_mode, v.collapse_epoch, v.best_acc, v.spikes, v.never_learned

Epochs are counted from 1. Modes: `nonfinite` (NaN/inf anywhere), `diverged` (learned, then fell
below chance + (1 - drop) * (best - chance) and stayed there for the last >= patience epochs),
`constant_output` (a diverged run whose final predictions are almost all one class).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence


@dataclass(frozen=True)
class RunVerdict:
    best_acc: float
    best_epoch: Optional[int]
    final_acc: float
    collapsed: bool
    collapse_epoch: Optional[int]
    collapse_mode: str  # "", "nonfinite", "diverged" or "constant_output"
    never_learned: bool
    spikes: int


def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def best_accuracy(val_acc: Sequence[float], chance: float) -> tuple[float, Optional[int]]:
    """(best accuracy, its epoch): the first epoch reaching the maximum finite accuracy.

    A run without any finite accuracy (non-finite in its first epoch) scores `chance`, what an
    untrained model gets, and has no best epoch.
    """
    best, best_epoch = -math.inf, None
    for epoch, acc in enumerate(val_acc, start=1):
        if _finite(acc) and acc > best:
            best, best_epoch = float(acc), epoch
    if best_epoch is None:
        return float(chance), None
    return best, best_epoch


def final_stretch_start(val_acc: Sequence[float], threshold: float) -> Optional[int]:
    """First epoch of the final stretch below `threshold` (NaN counts as below), or None."""
    start = None
    for epoch in range(len(val_acc), 0, -1):
        acc = val_acc[epoch - 1]
        if _finite(acc) and acc >= threshold:
            break
        start = epoch
    return start


def count_spikes(val_loss: Sequence[float], spike_factor: float) -> int:
    """Epochs whose val loss exceeds spike_factor x the lowest val loss of the epochs before,
    within stretches the run later recovers from (the last, unrecovered stretch is not counted)."""
    lowest = math.inf
    spikes = 0
    pending = 0  # spike epochs in the current stretch, counted once the run recovers
    for loss in val_loss:
        spiking = not _finite(loss) or (math.isfinite(lowest) and loss > spike_factor * lowest)
        if spiking:
            pending += 1
            continue
        spikes += pending
        pending = 0
        lowest = min(lowest, loss)
    return spikes


def detect_run(
    val_acc: Sequence[float],
    val_loss: Sequence[float],
    pred_top_frac: Sequence[float],
    nonfinite_epoch: Optional[int],
    chance: float,
    detect: Any,
) -> RunVerdict:
    """Classify one run. `detect` holds drop, patience, min_gain, spike_factor, constant_frac."""
    best, best_epoch = best_accuracy(val_acc, chance)
    final = float(val_acc[-1]) if len(val_acc) and _finite(val_acc[-1]) else math.nan
    spikes = count_spikes(val_loss, detect.spike_factor)
    if nonfinite_epoch is not None:
        return RunVerdict(best, best_epoch, final, True, int(nonfinite_epoch), "nonfinite", False, spikes)
    never_learned = best < chance + detect.min_gain
    if never_learned:
        return RunVerdict(best, best_epoch, final, False, None, "", True, spikes)
    threshold = chance + (1.0 - detect.drop) * (best - chance)
    start = final_stretch_start(val_acc, threshold)
    if start is None or len(val_acc) - start + 1 < detect.patience:
        return RunVerdict(best, best_epoch, final, False, None, "", False, spikes)
    top = pred_top_frac[-1] if len(pred_top_frac) else math.nan
    mode = "constant_output" if _finite(top) and top >= detect.constant_frac else "diverged"
    return RunVerdict(best, best_epoch, final, True, start, mode, False, spikes)
