"""The collapse boundary of one slice: the learning rate at 10% and at 50% collapse risk.

A *slice* is every run that shares all grid axes except the learning rate. For each run we know
its learning rate and whether it collapsed. This module estimates, per slice, the LR at which
the collapse risk reaches 10% (`lr_at_10`) and 50% (`lr_at_50`), each with a 95% interval, and
says so plainly when the data only support a bound ("above 0.3") or nothing at all::

    fit = fit_boundary(lrs, collapsed)          # one lr and one 0/1 per run of the slice
    fit.at_50.text()                            # "0.12 (95% CI 0.08-0.2)"
    fit.at_10.kind, fit.at_10.lo                # "above", 0.3: lr_at_10 > 0.3 (95% confidence)

Model
-----
The collapse probability is a monotone increasing logistic function of x = log10(lr):

    P(collapse | lr) = expit(b * (x - x50)),   b >= 0 (per decade of LR),

so x50 is log10 of the LR at 50% risk and the LR at risk q is x_q = x50 + logit(q) / b.
Internally the curve is written expit(a + b*x), which also holds the flat curves (b = 0) at any
level. Only per-LR counts (runs n_i, collapses k_i) enter the likelihood, which makes a fit cost
a few milliseconds whatever the number of seeds.

Why profile likelihood (and not the bootstrap or Wald intervals)
----------------------------------------------------------------
With 3-10 seeds per LR, *complete separation* is common: every low LR has 0 collapses, every
high LR has all runs collapsed. The maximum-likelihood slope is then infinite: bootstrap
resamples are just as separated (degenerate), and Wald intervals (estimate +- 1.96 standard
errors) are undefined. The profile-likelihood interval stays finite and honest: for a candidate
x_q it asks how well the best curve that passes through risk q at x_q can explain the data, and
keeps every x_q whose likelihood-ratio statistic 2*(ll_max - ll_profile(x_q)) is at most the
chi-square (1 df) 95% quantile 3.841. Under separation that interval spans the gap between the
last all-stable and the first all-collapsed LR, plus what the counts there allow. Slopes are
searched in [0, 1000] per decade; 1000 per decade is a step for any LR grid, so the supremum of
the likelihood (reached only as b -> infinity) is computed exactly, as the likelihood of a step,
and the profile approaches it to within far less than the 3.841 that matters. The point
estimate under separation is, by convention, the log-midpoint of the gap (or the one LR with
mixed outcomes, when there is one).
When the data are consistent with a flat curve the profile flattens out and an interval end may
not exist: that side is reported as unbounded.

Never extrapolate silently
--------------------------
The tested range is [min lr, max lr] of the slice. An estimate outside it is not reported as a
number, and an interval end outside it is reported as open (None), never as an extrapolated
value. A result (`RiskLR`) has one of four kinds:

- "fit": an estimate inside the tested range with its 95% interval; an end that lies beyond the
  tested range is None (printed as "<lr_min" or ">lr_max"). At least one end is inside: an
  interval beyond the tested range on both sides says nothing, and is reported as "unknown".
- "above": only a lower bound is supported, lr_at_q > lo with 95% confidence (the estimate lies
  above the tested range, or the data hold no collapse at all).
- "below": only an upper bound, lr_at_q < hi with 95% confidence.
- "unknown": nothing within the tested range is excluded; `note` says what is known.

Degenerate data (bounds, never errors)
--------------------------------------
- No runs: "unknown".
- No collapse at all: the risk is monotone, so the risk at an LR L is at most the risk at every
  larger LR; 0 collapses among the N runs at LRs >= L give risk(L) <= 1 - 0.05**(1/N) (exact
  one-sided 95% bound). lr_at_q is therefore above the largest L whose bound is below q ("above
  L"); with too few runs no L qualifies and the result is "unknown", with a note that says how
  many runs would be needed (29 at or above an LR for lr_at_10, 5 for lr_at_50).
- Every run collapsed: the mirror image, risk(L) >= 0.05**(1/N) from the N runs at LRs <= L,
  giving "below L".
- A single LR with mixed outcomes (no slope information): the exact one-sided 95%
  Clopper-Pearson bounds of its rate decide: a rate significantly above q gives "below lr", one
  significantly below q gives "above lr", otherwise "unknown".
- Collapse that does not increase with the LR: the model is monotone increasing, so the slope is
  clamped at 0 (status "flat"); the profile then gives bounds or "unknown", never an estimate.

The exact rules state one-sided 95% bounds; a bound read off the profile-likelihood interval is
one end of a two-sided 95% interval, so it holds with at least 95% confidence too.

Figures
-------
`BoundaryFit.risk(lr)` is the fitted curve and `BoundaryFit.band(lr)` a pointwise 95% band of
P(collapse): at each LR, every risk that some monotone curve through it explains well enough
(the same likelihood-ratio test). Both are NaN outside the tested range unless asked to
extrapolate. A band costs two root searches per LR (a few ms each): draw it on ~50 points.

Planning more runs (`sweep refine`)
-----------------------------------
`rates_by_lr` gives every LR's collapse rate with its exact two-sided 95% Clopper-Pearson
interval; `straddling_lrs` lists the LRs whose interval still contains a risk level q (more
seeds there would tell on which side of the boundary they lie); `collapse_bracket` gives the
largest LR with no collapse below the smallest LR where at least half the runs collapsed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

import numpy as np
from scipy.special import betaincinv, chdtri, expit, logit

from sweep.analysis.boundary.plan import Bracket, LrRate, collapse_bracket, rates_by_lr, straddling_lrs
from sweep.analysis.boundary.likelihood import (
    _ETA_LIMIT, _band_at, _counts, _Counts, _maximum_likelihood, _profile_statement,
)
from sweep.analysis.boundary.types import CHI2_95, KINDS, LEVEL, STATUSES, RiskLR, _fmt, _pct, _runs

__all__ = ["CHI2_95", "KINDS", "STATUSES", "BoundaryFit", "RiskLR", "fit_boundary", "fit_boundary_counts", "risk_lr",
           "Bracket", "LrRate", "collapse_bracket", "rates_by_lr", "straddling_lrs"]


@dataclass(frozen=True)
class BoundaryFit:
    """The fitted collapse curve of one slice and its two reported risk levels.

    status: "empty" (no runs), "no-collapse", "all-collapsed", "single-lr" (one distinct LR,
    mixed outcomes), "separated" (complete or quasi-complete separation: the maximum-likelihood
    curve is a step, slope infinite), "flat" (collapse does not increase with the LR: slope
    clamped at 0), "fit" (finite positive slope).
    slope: b per decade at the maximum likelihood; math.inf when "separated", 0.0 when "flat",
    None when the data say nothing about it (empty, no-collapse, all-collapsed, single-lr).
    x50: the model parameter log10(LR at 50% risk) at the maximum likelihood (the step position
    when separated: the log-midpoint of the gap, or the LR with mixed outcomes). It may lie
    outside the tested range; report `at_50`, which never extrapolates.
    loglik: the maximum (the supremum when separated) of the log-likelihood.
    """

    n_runs: int
    n_collapsed: int
    lr_min: float
    lr_max: float
    n_lrs: int
    status: str
    slope: Optional[float]
    x50: Optional[float]
    at_10: RiskLR
    at_50: RiskLR
    loglik: float
    # The curve the profile starts from: risk = expit(a + b*log10(lr)), b capped at SLOPE_MAX.
    _a: float = field(repr=False)
    _b: float = field(repr=False)
    _counts: _Counts = field(repr=False, compare=False)

    def at(self, q: float) -> RiskLR:
        """The LR at any risk level 0 < q < 1, with the same rules as `at_10` and `at_50`."""
        return risk_lr(self, q)

    def _x(self, lr, extrapolate: bool) -> tuple[np.ndarray, np.ndarray]:
        lr = np.atleast_1d(np.asarray(lr, dtype=float))
        if np.any(~(lr > 0)):
            raise ValueError(f"learning rates must be > 0, but got {lr}")
        x = np.log10(lr)
        inside = np.full(x.shape, True) if extrapolate else (
            (lr >= self.lr_min * (1 - 1e-12)) & (lr <= self.lr_max * (1 + 1e-12)))
        return x, inside

    def risk(self, lr, extrapolate: bool = False) -> np.ndarray:
        """Fitted P(collapse) at each lr; NaN outside the tested range unless `extrapolate`."""
        x, inside = self._x(lr, extrapolate)
        if self.status == "empty":
            p = np.full(x.shape, math.nan)
        elif self.status == "no-collapse":
            p = np.zeros(x.shape)
        elif self.status == "all-collapsed":
            p = np.ones(x.shape)
        else:
            p = expit(self._a + self._b * x)
        return np.where(inside, p, math.nan)

    def band(self, lr, level: float = LEVEL, extrapolate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise profile-likelihood band (lo, hi) of P(collapse) at each lr.

        At each lr the band holds every risk p for which some monotone curve through p at that
        lr is not rejected by the likelihood-ratio test at `level`. NaN outside the tested range
        unless `extrapolate` (with no runs there is no tested range; extrapolated, (0, 1)).
        """
        x, inside = self._x(lr, extrapolate)
        lo, hi = np.zeros(x.shape), np.ones(x.shape)
        if self.status != "empty":
            cut = float(chdtri(1, 1 - level))
            centre = self._centre_logits(x)
            slope = self._b if self.status == "fit" else None
            for i in np.flatnonzero(inside):  # each point costs two root searches: skip the rest
                lo[i], hi[i] = _band_at(self._counts, self.loglik, float(x[i]), float(centre[i]), cut,
                                        slope)
        return np.where(inside, lo, math.nan), np.where(inside, hi, math.nan)

    def _centre_logits(self, x: np.ndarray) -> np.ndarray:
        if self.status == "no-collapse":
            return np.full(x.shape, -_ETA_LIMIT)
        if self.status == "all-collapsed":
            return np.full(x.shape, _ETA_LIMIT)
        return np.clip(self._a + self._b * x, -_ETA_LIMIT, _ETA_LIMIT)


# --------------------------------------------------------------------------------------------
# Exact bounds for degenerate data
# --------------------------------------------------------------------------------------------

def _runs_needed(q: float) -> int:
    """Fewest runs without (or with only) collapses that bound the risk below (above) q."""
    return math.floor(math.log(1 - LEVEL) / math.log(1 - q)) + 1


def _no_collapse_statement(c: _Counts, q: float) -> RiskLR:
    """No collapse anywhere: risk(L) <= 1 - 0.05**(1/N(>= L)) by monotonicity."""
    runs_at_or_above = np.cumsum(c.n[::-1])[::-1]
    bound = 1.0 - (1.0 - LEVEL) ** (1.0 / runs_at_or_above)
    lr_min, lr_max = float(c.lr[0]), float(c.lr[-1])
    ok = np.nonzero(bound < q)[0]
    if len(ok):
        return RiskLR(q, None, float(c.lr[ok[-1]]), None, "above", lr_min, lr_max)
    note = (f"no collapse in {_runs(c.n.sum())} up to lr {_fmt(lr_max)}; at least "
            f"{_runs_needed(q)} runs at or above an lr are needed to place lr_at_{_pct(q)} above it")
    return RiskLR(q, None, None, None, "unknown", lr_min, lr_max, note)


def _all_collapsed_statement(c: _Counts, q: float) -> RiskLR:
    """Every run collapsed: risk(L) >= 0.05**(1/N(<= L)) by monotonicity."""
    runs_at_or_below = np.cumsum(c.n)
    bound = (1.0 - LEVEL) ** (1.0 / runs_at_or_below)
    lr_min, lr_max = float(c.lr[0]), float(c.lr[-1])
    ok = np.nonzero(bound > q)[0]
    if len(ok):
        return RiskLR(q, None, None, float(c.lr[ok[0]]), "below", lr_min, lr_max)
    note = (f"every run collapsed ({_runs(c.n.sum())}, down to lr {_fmt(lr_min)}); at least "
            f"{_runs_needed(1 - q)} runs at or below an lr are needed to place lr_at_{_pct(q)} below it")
    return RiskLR(q, None, None, None, "unknown", lr_min, lr_max, note)


def _one_sided_cp(k: float, n: float) -> tuple[float, float]:
    """Exact one-sided 95% Clopper-Pearson bounds (lower, upper) of a binomial rate k/n."""
    alpha = 1.0 - LEVEL
    lower = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, alpha))
    upper = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1 - alpha))
    return lower, upper


def _single_lr_statement(c: _Counts, q: float) -> RiskLR:
    """One LR with mixed outcomes: only its rate is known, compared with q exactly."""
    lr = float(c.lr[0])
    k, n = float(c.k[0]), float(c.n[0])
    lower, upper = _one_sided_cp(k, n)
    if lower > q:
        return RiskLR(q, None, None, lr, "below", lr, lr)
    if upper < q:
        return RiskLR(q, None, lr, None, "above", lr, lr)
    note = (f"{int(k)} of {int(n)} runs collapsed at the single lr {_fmt(lr)} (95% bounds "
            f"{lower:.2f}-{upper:.2f}), consistent with a {_pct(q)}% risk")
    return RiskLR(q, None, None, None, "unknown", lr, lr, note)


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------

def fit_boundary(lrs: Sequence[float], collapsed: Sequence[bool | int]) -> BoundaryFit:
    """Fit the collapse curve of one slice from run-level outcomes (one lr and 0/1 per run)."""
    collapsed = np.asarray(collapsed).ravel()
    if collapsed.size and not np.all((collapsed == 0) | (collapsed == 1)):
        raise ValueError(f"collapsed must be 0/1 or bool per run, but got {np.unique(collapsed)}")
    return fit_boundary_counts(lrs, np.ones(collapsed.shape), collapsed.astype(float))


def fit_boundary_counts(lrs: Sequence[float], n_runs: Sequence[int],
                        n_collapsed: Sequence[int]) -> BoundaryFit:
    """Fit the collapse curve from counts: per entry an lr, its runs and its collapsed runs.

    Entries with the same lr are pooled; entries with 0 runs are ignored.
    """
    c = _counts(lrs, n_runs, n_collapsed)
    n, k = int(c.n.sum()), int(c.k.sum())
    if n == 0:
        unknown = [RiskLR(q, None, None, None, "unknown", note="no runs") for q in (0.1, 0.5)]
        return BoundaryFit(0, 0, math.nan, math.nan, 0, "empty", None, None, *unknown,
                           loglik=0.0, _a=math.nan, _b=math.nan, _counts=c)
    common = dict(n_runs=n, n_collapsed=k, lr_min=float(c.lr[0]), lr_max=float(c.lr[-1]),
                  n_lrs=len(c.x), _counts=c)
    if k == 0:
        return BoundaryFit(status="no-collapse", slope=None, x50=None,
                           at_10=_no_collapse_statement(c, 0.1), at_50=_no_collapse_statement(c, 0.5),
                           loglik=0.0, _a=-math.inf, _b=0.0, **common)
    if k == n:
        return BoundaryFit(status="all-collapsed", slope=None, x50=None,
                           at_10=_all_collapsed_statement(c, 0.1),
                           at_50=_all_collapsed_statement(c, 0.5),
                           loglik=0.0, _a=math.inf, _b=0.0, **common)
    if len(c.x) == 1:
        rate = k / n
        return BoundaryFit(status="single-lr", slope=None, x50=None,
                           at_10=_single_lr_statement(c, 0.1), at_50=_single_lr_statement(c, 0.5),
                           loglik=c.loglik(np.array([logit(rate)])), _a=float(logit(rate)), _b=0.0,
                           **common)
    mle = _maximum_likelihood(c)
    # The risk levels are computed from the fitted curve itself, so build it first.
    curve = BoundaryFit(status=mle.status, slope=mle.slope, x50=mle.x50, at_10=None, at_50=None,
                        loglik=mle.ll, _a=mle.a, _b=mle.b, **common)
    return replace(curve, at_10=risk_lr(curve, 0.1), at_50=risk_lr(curve, 0.5))


def risk_lr(fit: BoundaryFit, q: float) -> RiskLR:
    """The LR at collapse risk q (0 < q < 1) of a fitted slice, with its 95% interval or bound."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must lie strictly between 0 and 1, but got {q}")
    c = fit._counts
    if fit.status == "empty":
        return RiskLR(q, None, None, None, "unknown", note="no runs")
    if fit.status == "no-collapse":
        return _no_collapse_statement(c, q)
    if fit.status == "all-collapsed":
        return _all_collapsed_statement(c, q)
    if fit.status == "single-lr":
        return _single_lr_statement(c, q)
    eta = float(logit(q))
    note = ""
    if fit._b > 0:
        t_hat = (eta - fit._a) / fit._b
    else:  # flat: the curve sits at one level and reaches q nowhere (or everywhere)
        t_hat = math.inf if fit._a < eta else (-math.inf if fit._a > eta else math.nan)
        note = ("collapse does not increase with the lr in these data (slope clamped at 0); "
                f"any lr_at_{_pct(q)} in the tested range is consistent with them")
    return _profile_statement(c, fit.loglik, q, t_hat, note, fit._b if fit.status == "fit" else None)
