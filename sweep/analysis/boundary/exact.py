"""Exact one-sided bounds for data the logistic fit cannot use: no collapse at all, every run
collapsed, or a single lr. They rest only on the risk rising with the lr (monotonicity) and on
binomial tail probabilities, never on the logistic shape.

- No collapse: the risk at an LR L is at most the risk at every larger LR, so 0 collapses among
  the N runs at LRs >= L give risk(L) <= 1 - 0.05**(1/N) (exact one-sided 95% bound): 29 runs at
  or above an lr bound its risk below 10%, 5 below 50%.
- Every run collapsed: the mirror image, risk(L) >= 0.05**(1/N) from the N runs at LRs <= L.
- A single LR with mixed outcomes: its exact one-sided 95% Clopper-Pearson bounds decide.
"""

from __future__ import annotations

import math

import numpy as np

from sweep.analysis.boundary.likelihood import _Counts
from sweep.analysis.boundary.types import LEVEL, SAFE_RISK, RiskLR, SafeLR, _fmt, _pct, _runs
from sweep.analysis.noise import clopper_pearson


def runs_needed(q: float) -> int:
    """Fewest runs without (or with only) collapses that bound the risk below (above) q."""
    return math.floor(math.log(1 - LEVEL) / math.log(1 - q)) + 1


def no_collapse_statement(c: _Counts, q: float) -> RiskLR:
    """No collapse anywhere: risk(L) <= 1 - 0.05**(1/N(>= L)) by monotonicity."""
    runs_at_or_above = np.cumsum(c.n[::-1])[::-1]
    bound = 1.0 - (1.0 - LEVEL) ** (1.0 / runs_at_or_above)
    lr_min, lr_max = float(c.lr[0]), float(c.lr[-1])
    ok = np.nonzero(bound < q)[0]
    if len(ok):
        return RiskLR(q, None, float(c.lr[ok[-1]]), None, "above", lr_min, lr_max)
    note = (
        f"no collapse in {_runs(c.n.sum())} up to lr {_fmt(lr_max)}; at least "
        f"{runs_needed(q)} runs at or above an lr are needed to place lr_at_{_pct(q)} above it"
    )
    return RiskLR(q, None, None, None, "unknown", lr_min, lr_max, note)


def all_collapsed_statement(c: _Counts, q: float) -> RiskLR:
    """Every run collapsed: risk(L) >= 0.05**(1/N(<= L)) by monotonicity."""
    runs_at_or_below = np.cumsum(c.n)
    bound = (1.0 - LEVEL) ** (1.0 / runs_at_or_below)
    lr_min, lr_max = float(c.lr[0]), float(c.lr[-1])
    ok = np.nonzero(bound > q)[0]
    if len(ok):
        return RiskLR(q, None, None, float(c.lr[ok[0]]), "below", lr_min, lr_max)
    note = (
        f"every run collapsed ({_runs(c.n.sum())}, down to lr {_fmt(lr_min)}); at least "
        f"{runs_needed(1 - q)} runs at or below an lr are needed to place lr_at_{_pct(q)} below it"
    )
    return RiskLR(q, None, None, None, "unknown", lr_min, lr_max, note)


def one_sided_cp(k: float, n: float) -> tuple[float, float]:
    """Exact one-sided 95% Clopper-Pearson bounds (lower, upper) of a binomial rate k/n."""
    return clopper_pearson(k, n, 1.0 - LEVEL)


def single_lr_statement(c: _Counts, q: float) -> RiskLR:
    """One LR with mixed outcomes: only its rate is known, compared with q exactly."""
    lr = float(c.lr[0])
    k, n = float(c.k[0]), float(c.n[0])
    lower, upper = one_sided_cp(k, n)
    if lower > q:
        return RiskLR(q, None, None, lr, "below", lr, lr)
    if upper < q:
        return RiskLR(q, None, lr, None, "above", lr, lr)
    note = (
        f"{int(k)} of {int(n)} runs collapsed at the single lr {_fmt(lr)} (95% bounds "
        f"{lower:.2f}-{upper:.2f}), consistent with a {_pct(q)}% risk"
    )
    return RiskLR(q, None, None, None, "unknown", lr, lr, note)


def exact_safe(c: _Counts, status: str) -> SafeLR:
    """The safe LR of degenerate data, from the exact bounds above."""
    lr_min, lr_max = float(c.lr[0]), float(c.lr[-1])
    base = dict(lr_min=lr_min, lr_max=lr_max, n_runs=int(c.n.sum()), n_collapsed=int(c.k.sum()))
    if status == "no-collapse":
        r = no_collapse_statement(c, SAFE_RISK)
        if r.kind == "above":
            return (
                SafeLR(lr_max, "above", **base)
                if r.lo == lr_max
                else SafeLR(r.lo, "inside", **base)
            )
        more = runs_needed(SAFE_RISK) - int(c.n.sum())
        return SafeLR(
            None,
            "below",
            note=(
                f"no collapse in {_runs(c.n.sum())} up to lr {_fmt(lr_max)} keeps the risk below "
                f"{100 * (1 - (1 - LEVEL) ** (1 / c.n.sum())):.0f}% at every lr tried; {runs_needed(SAFE_RISK)} runs "
                f"at or above an lr show it below 10% ({more} more without a collapse)"
            ),
            **base,
        )
    if status == "single-lr" and one_sided_cp(float(c.k[0]), float(c.n[0]))[1] < SAFE_RISK:
        return SafeLR(lr_max, "above", **base)
    return SafeLR(None, "below", **base)


def exact_band(
    c: _Counts, status: str, x: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise two-sided `level` band of the risk at log10(lr) x for degenerate data, from the
    same exact bounds (each side at (1 - level) / 2)."""
    alpha = (1.0 - level) / 2
    lo, hi = np.zeros(x.shape), np.ones(x.shape)
    if status == "no-collapse":
        for i, xi in enumerate(x):
            runs = float(c.n[c.x >= xi - 1e-12].sum())
            hi[i] = 1.0 - alpha ** (1.0 / runs) if runs else 1.0
    elif status == "all-collapsed":
        for i, xi in enumerate(x):
            runs = float(c.n[c.x <= xi + 1e-12].sum())
            lo[i] = alpha ** (1.0 / runs) if runs else 0.0
    elif status == "single-lr":
        lo[:], hi[:] = clopper_pearson(float(c.k[0]), float(c.n[0]), alpha)
    return lo, hi
