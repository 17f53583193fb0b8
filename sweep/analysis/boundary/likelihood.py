"""Per-LR counts of a slice, and the statement (`RiskLR`) that a point estimate and its 95% ends
make once the tested range is taken into account: never an extrapolated number."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import log_expit

from sweep.analysis.boundary.types import RiskLR, _fmt, _pct


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class _Counts:
    """Sufficient statistics of a slice: sorted distinct lrs, their log10, runs and collapses."""

    lr: np.ndarray
    x: np.ndarray
    n: np.ndarray
    k: np.ndarray
    m: np.ndarray = field(init=False)  # runs that did not collapse

    def __post_init__(self) -> None:
        object.__setattr__(self, "m", self.n - self.k)

    def loglik(self, z: np.ndarray) -> float:
        """Binomial log-likelihood (without the constant binomial coefficients) at logits z."""
        return float(np.dot(self.k, log_expit(z)) + np.dot(self.m, log_expit(-z)))

    @property
    def key(self) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
        return tuple(self.lr.tolist()), tuple(self.n.tolist()), tuple(self.k.tolist())


def _counts(lrs: Sequence[float], n_runs: Sequence[float], n_collapsed: Sequence[float]) -> _Counts:
    lr = np.asarray(lrs, dtype=float).ravel()
    n = np.asarray(n_runs, dtype=float).ravel()
    k = np.asarray(n_collapsed, dtype=float).ravel()
    if not (lr.shape == n.shape == k.shape):
        raise ValueError(
            f"lrs, n_runs and n_collapsed must have one entry each, but got "
            f"lengths {lr.size}, {n.size}, {k.size}"
        )
    bad = ~np.isfinite(lr) | (lr <= 0)
    if np.any(bad):
        raise ValueError(f"learning rates must be finite and > 0, but got {lr[bad]}")
    if np.any((k < 0) | (k > n) | (k != np.round(k)) | (n != np.round(n))):
        raise ValueError("counts must be whole numbers with 0 <= n_collapsed <= n_runs")
    distinct, inverse = np.unique(lr, return_inverse=True)
    n_sum = np.bincount(inverse, weights=n, minlength=len(distinct))
    k_sum = np.bincount(inverse, weights=k, minlength=len(distinct))
    keep = n_sum > 0
    return _Counts(distinct[keep], np.log10(distinct[keep]), n_sum[keep], k_sum[keep])


def _separated(c: _Counts) -> bool:
    """Complete or quasi-complete separation: every LR below some point has no collapse and every
    LR above has all runs collapsed (at most one LR in between with mixed outcomes). Maximum
    likelihood then has no finite slope (the curve is a step); Firth's penalty keeps it finite."""
    zero, full = c.k == 0, c.k == c.n
    first = int(np.argmax(~zero))  # the first LR with a collapse; every LR before it has none
    return bool(np.all(full[first + 1 :]) and (full[first] and first > 0 or not full[first]))


def _statement(c: _Counts, q: float, est: float, lo: float, hi: float, note: str = "") -> RiskLR:
    """RiskLR for x_q = log10(lr at risk q) from its estimate and 95% ends (log10 units; +-inf for
    an end beyond any lr, NaN estimate when the curve never reaches q).

    A number is reported only inside the tested range; an estimate beyond it becomes a bound when
    the interval's end on the near side lies inside the range, and "unknown" when nothing in the
    range is excluded.
    """
    x0, x1 = float(c.x[0]), float(c.x[-1])
    lr_min, lr_max = float(c.lr[0]), float(c.lr[-1])
    base = dict(q=q, lr_min=lr_min, lr_max=lr_max)
    out_low, out_high = lo > x0, hi < x1  # lr_min / lr_max excluded with 95% confidence

    def to_lr(t: float) -> float:  # log10 -> lr, kept inside the tested range despite rounding
        return min(max(10.0**t, lr_min), lr_max)

    everything = note or (
        f"any lr_at_{_pct(q)} in the tested range {_fmt(lr_min)}-{_fmt(lr_max)} "
        "and beyond is consistent with the data"
    )
    unknown = RiskLR(estimate=None, lo=None, hi=None, kind="unknown", note=everything, **base)
    if math.isnan(est):
        return unknown
    if est > x1:  # the fitted curve reaches q only beyond lr_max
        if lo > x1:
            return RiskLR(estimate=None, lo=lr_max, hi=None, kind="above", **base)
        return (
            RiskLR(estimate=None, lo=to_lr(lo), hi=None, kind="above", **base)
            if out_low
            else unknown
        )
    if est < x0:
        if hi < x0:
            return RiskLR(estimate=None, lo=None, hi=lr_min, kind="below", **base)
        return (
            RiskLR(estimate=None, lo=None, hi=to_lr(hi), kind="below", **base)
            if out_high
            else unknown
        )
    if not (out_low or out_high):
        return unknown
    estimate = to_lr(est)
    lo_lr = min(to_lr(lo), estimate) if out_low else None
    hi_lr = max(to_lr(hi), estimate) if out_high else None
    return RiskLR(estimate=estimate, lo=lo_lr, hi=hi_lr, kind="fit", **base)


def _risk_bound_note(q: float, slope: float | None) -> str:
    """The note of a flat fit (collapse not rising with the lr)."""
    return (
        "collapse does not increase with the lr in these data (slope clamped at 0); "
        f"any lr_at_{_pct(q)} in the tested range is consistent with them"
    )
