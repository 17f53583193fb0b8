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
from typing import Callable, Optional, Sequence

import numpy as np
from scipy.optimize import brentq, minimize, root
from scipy.special import betaincinv, chdtri, expit, log_expit, logit

LEVEL = 0.95
# Likelihood-ratio cut for a 95% interval: the chi-square (1 df) 95% quantile, 3.841.
CHI2_95 = float(chdtri(1, 1 - LEVEL))
# Searched slopes, per decade of LR: above SLOPE_MAX the curve is a step for any LR grid, below
# SLOPE_MIN it is flat over any LR range; b = 0 (flat) is searched as well.
SLOPE_MIN = 1e-3
SLOPE_MAX = 1e3
# Band ends are searched for risks in [expit(-23), expit(23)] ~ [1e-10, 1 - 1e-10].
_ETA_LIMIT = 23.0
# Interval ends in log10(lr) units: 1e-5 decades (0.002% of the LR) is far below any reported
# precision.
_X_TOL = 1e-5

KINDS = ("fit", "above", "below", "unknown")
STATUSES = ("empty", "no-collapse", "all-collapsed", "single-lr", "separated", "flat", "fit")


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

def _fmt(lr: float) -> str:
    return f"{lr:.2g}"


def _pct(q: float) -> str:
    return f"{100 * q:g}"


def _runs(n: float) -> str:
    return "1 run" if n == 1 else f"{int(n)} runs"


@dataclass(frozen=True)
class RiskLR:
    """The LR at collapse risk `q`, as far as the data support it (all values in LR units).

    kind "fit": `estimate` with its 95% profile-likelihood interval [lo, hi]; an end that lies
    beyond the tested range [lr_min, lr_max] is None (`open_below` / `open_above`).
    kind "above": lr_at_q > `lo` with 95% confidence (estimate None, hi None).
    kind "below": lr_at_q < `hi` with 95% confidence (estimate None, lo None).
    kind "unknown": nothing within the tested range is excluded; `note` says what is known.
    """

    q: float
    estimate: Optional[float]
    lo: Optional[float]
    hi: Optional[float]
    kind: str
    lr_min: float = math.nan
    lr_max: float = math.nan
    note: str = ""

    @property
    def open_below(self) -> bool:
        """A "fit" whose interval continues below the tested range (lo is None)."""
        return self.kind == "fit" and self.lo is None

    @property
    def open_above(self) -> bool:
        """A "fit" whose interval continues above the tested range (hi is None)."""
        return self.kind == "fit" and self.hi is None

    def covers(self, lr: float) -> bool:
        """Whether the 95% statement allows lr_at_q == lr (True for "unknown")."""
        if self.kind == "above":
            return lr > self.lo
        if self.kind == "below":
            return lr < self.hi
        return (self.lo is None or self.lo <= lr) and (self.hi is None or lr <= self.hi)

    def text(self) -> str:
        """One line for a report, e.g. "0.12 (95% CI 0.08-0.2)" or "above 0.3 (95% confidence)"."""
        if self.kind == "fit":
            lo = _fmt(self.lo) if self.lo is not None else "<" + _fmt(self.lr_min)
            hi = _fmt(self.hi) if self.hi is not None else ">" + _fmt(self.lr_max)
            # A dash would read as a minus sign next to "1e-05" or "<0.01".
            sep = "-" if (self.lo is not None and self.hi is not None and "e" not in lo + hi) else " to "
            return f"{_fmt(self.estimate)} (95% CI {lo}{sep}{hi})"
        if self.kind == "above":
            return f"above {_fmt(self.lo)} (95% confidence)"
        if self.kind == "below":
            return f"below {_fmt(self.hi)} (95% confidence)"
        return "not determined" + (f": {self.note}" if self.note else "")


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class _Counts:
    """Sufficient statistics of a slice: sorted distinct lrs, their log10, runs and collapses
    (and sums the profile needs at every evaluation, computed once)."""

    lr: np.ndarray
    x: np.ndarray
    n: np.ndarray
    k: np.ndarray
    m: np.ndarray = field(init=False)  # runs that did not collapse
    sums: tuple[float, float, float, float] = field(init=False)  # sum k, sum n, sum x*k, sum x*n

    def __post_init__(self) -> None:
        object.__setattr__(self, "m", self.n - self.k)
        object.__setattr__(self, "sums", (float(self.k.sum()), float(self.n.sum()),
                                          float(np.dot(self.x, self.k)), float(np.dot(self.x, self.n))))

    def loglik(self, z: np.ndarray) -> float:
        """Binomial log-likelihood (without the constant binomial coefficients) at logits z."""
        return float(np.dot(self.k, log_expit(z)) + np.dot(self.m, log_expit(-z)))


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
# Profile likelihood
# --------------------------------------------------------------------------------------------

_U_MIN, _U_MAX = math.log(SLOPE_MIN), math.log(SLOPE_MAX)
# Best slopes are found to a relative 1e-5: the log-likelihood is flat at its maximum, so this
# puts the profile within ~1e-9 of its value, far below the 3.841 scale that matters.
_U_TOL = 1e-5


def _best_slope_loglik(c: _Counts, eta: float, t: float,
                       guess: Optional[float] = None) -> tuple[float, float]:
    """(log-likelihood, b) of the best curve expit(eta + b*(x - t)) with 0 <= b <= SLOPE_MAX.

    This is the profile log-likelihood of "the risk at log10(lr) = t is expit(eta)": with
    eta = logit(q) it is the profile for x_q = t. The log-likelihood is concave in b, so its
    maximum is where the score in b changes sign (or at an end of [0, SLOPE_MAX]). `guess`, the
    best slope at a nearby t, narrows the root search (the profile is evaluated along a root
    search in t, where the best slope changes little from one call to the next).
    """
    # The score in b is sum (x - t) * (k - n * risk); precomputed sums save an array pass.
    k_sum, _, xk_sum, _ = c.sums
    d = c.x - t
    dk, dn = xk_sum - t * k_sum, d * c.n
    memo: dict[float, float] = {}  # brentq evaluates its bracket ends again; signs must agree

    def score(b: float) -> float:
        value = memo.get(b)
        if value is None:
            value = memo[b] = dk - float(np.dot(dn, expit(eta + b * d)))
        return value

    def score_u(u: float) -> float:  # the score at b = exp(u): slopes span six decades
        return score(math.exp(u))

    if score(0.0) <= 0:  # falling from b = 0 on: flat is best
        return c.loglik(np.full(d.shape, eta)), 0.0
    bracket = None
    if guess is not None and SLOPE_MIN < guess < SLOPE_MAX:
        # A window of +-25% around the guess, moved 2.5 e-folds down or up if the root lies
        # outside it (the score falls with b, so its sign says on which side).
        u0 = math.log(guess)
        lo, hi = max(_U_MIN, u0 - 0.25), min(_U_MAX, u0 + 0.25)
        if score_u(lo) <= 0:
            lo, hi = max(_U_MIN, u0 - 2.5), lo
        elif score_u(hi) >= 0:
            lo, hi = hi, min(_U_MAX, u0 + 2.5)
        if score_u(lo) > 0 > score_u(hi):
            bracket = (lo, hi)
    if bracket is not None:
        b = math.exp(brentq(score_u, *bracket, xtol=_U_TOL))
    elif score_u(_U_MAX) >= 0:  # still rising at the step: the supremum's neighbourhood
        b = SLOPE_MAX
    elif score_u(_U_MIN) > 0:
        b = math.exp(brentq(score_u, _U_MIN, _U_MAX, xtol=_U_TOL))
    else:  # 0 < b <= SLOPE_MIN: practically flat
        b = brentq(score, 0.0, math.exp(_U_MIN), xtol=1e-12)
    return c.loglik(eta + b * d), b


def _excess(c: _Counts, ll_max: float, cut: float, curve: Callable[[float], tuple[float, float]],
            at_max: Optional[tuple[float, float]] = None) -> Callable[[float], float]:
    """s -> signed distance past the interval end: sqrt(LR statistic) - sqrt(cut).

    `curve(s)` is (eta, t): the constraint "risk expit(eta) at log10(lr) = t" for the parameter
    s being searched (t for an LR at a risk level, eta for the risk at an LR). The square root
    of the likelihood-ratio statistic is close to linear in s, so root finders converge in a few
    steps where the statistic itself (close to quadratic) would need more.
    `at_max` = (s, b): the maximum-likelihood curve has parameter s and slope b, so the profile
    there is ll_max (no need to compute it) and b is a good first guess of nearby best slopes.
    """
    root_cut = math.sqrt(cut)
    cache: dict[float, float] = {}
    last_slope: list[Optional[float]] = [None]
    if at_max is not None:
        cache[at_max[0]] = -root_cut
        last_slope[0] = at_max[1]

    def f(s: float) -> float:
        if s not in cache:
            eta, t = curve(s)
            ll, last_slope[0] = _best_slope_loglik(c, eta, t, last_slope[0])
            cache[s] = math.sqrt(max(2.0 * (ll_max - ll), 0.0)) - root_cut
        return cache[s]

    return f


def _root(f: Callable[[float], float], a: float, b: float) -> float:
    """The crossing of f between a and b (f changes sign there, f(a) or f(b) may be ~0)."""
    fa, fb = f(a), f(b)
    if fa == 0 or fb == 0 or (fa > 0) == (fb > 0):  # touching: no interior crossing to refine
        return a if abs(fa) <= abs(fb) else b
    return brentq(f, min(a, b), max(a, b), xtol=_X_TOL)


def _band_at(c: _Counts, ll_max: float, x0: float, eta_hat: float, cut: float,
             slope: Optional[float]) -> tuple[float, float]:
    """(lo, hi) risk at log10(lr) = x0: the profile in eta = logit(risk) is concave, so the band
    is an interval around the fitted logit; an end that is never reached is 0 or 1.
    `slope`: the slope of the maximum-likelihood curve when it is a finite-slope fit."""
    g = _excess(c, ll_max, cut, lambda eta: (eta, x0),
                None if slope is None else (eta_hat, slope))
    centre = g(eta_hat)
    if centre > 0:  # cannot happen at the fit; numerical safety
        return float(expit(eta_hat)), float(expit(eta_hat))
    lo = 0.0 if g(-_ETA_LIMIT) <= 0 else float(expit(_root(g, -_ETA_LIMIT, eta_hat)))
    hi = 1.0 if g(_ETA_LIMIT) <= 0 else float(expit(_root(g, eta_hat, _ETA_LIMIT)))
    return lo, hi


def _profile_statement(c: _Counts, ll_max: float, q: float, t_hat: float, note: str = "",
                       slope: Optional[float] = None) -> RiskLR:
    """RiskLR for x_q from the profile likelihood, given the maximum-likelihood x_q = t_hat
    (+-inf when the fitted curve never reaches q, NaN when it is flat at exactly q) and, for a
    finite-slope fit, its slope.

    The profile is unimodal in t (the 95% set is an interval on the extended line), so only the
    ends of the tested range need testing before a root search inside it.
    """
    x0, x1 = float(c.x[0]), float(c.x[-1])
    lr_min, lr_max = float(c.lr[0]), float(c.lr[-1])
    eta = float(logit(q))
    f = _excess(c, ll_max, CHI2_95, lambda t: (eta, t), None if slope is None else (t_hat, slope))
    out_low, out_high = f(x0) > 0, f(x1) > 0  # lr_min / lr_max excluded with 95% confidence
    base = dict(q=q, lr_min=lr_min, lr_max=lr_max)

    def to_lr(t: float) -> float:  # log10 -> lr, kept inside the tested range despite rounding
        return min(max(10.0 ** t, lr_min), lr_max)

    everything = note or (f"any lr_at_{_pct(q)} in the tested range {_fmt(lr_min)}-{_fmt(lr_max)} "
                          "and beyond is consistent with the data")

    if math.isnan(t_hat):
        return RiskLR(estimate=None, lo=None, hi=None, kind="unknown", note=everything, **base)
    if t_hat > x1:  # the fitted curve reaches q only beyond lr_max
        if out_high:
            return RiskLR(estimate=None, lo=lr_max, hi=None, kind="above", **base)
        if out_low:
            return RiskLR(estimate=None, lo=to_lr(_root(f, x0, x1)), hi=None, kind="above", **base)
        return RiskLR(estimate=None, lo=None, hi=None, kind="unknown", note=everything, **base)
    if t_hat < x0:
        if out_low:
            return RiskLR(estimate=None, lo=None, hi=lr_min, kind="below", **base)
        if out_high:
            return RiskLR(estimate=None, lo=None, hi=to_lr(_root(f, x0, x1)), kind="below", **base)
        return RiskLR(estimate=None, lo=None, hi=None, kind="unknown", note=everything, **base)
    if not (out_low or out_high):
        return RiskLR(estimate=None, lo=None, hi=None, kind="unknown", note=everything, **base)
    lo = to_lr(_root(f, x0, t_hat)) if out_low else None
    hi = to_lr(_root(f, t_hat, x1)) if out_high else None
    return RiskLR(estimate=to_lr(t_hat), lo=lo, hi=hi, kind="fit", **base)


# --------------------------------------------------------------------------------------------
# Maximum likelihood
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Mle:
    status: str                 # "separated", "flat" or "fit"
    a: float                    # risk = expit(a + b*x), b capped at SLOPE_MAX
    b: float
    ll: float                   # maximum (supremum when separated)
    slope: float                # reported slope: inf when separated
    x50: Optional[float]


def _separated(c: _Counts) -> Optional[_Mle]:
    """The step curve when every LR below some point has no collapse and every LR above has all
    runs collapsed (at most one LR in between with mixed outcomes); None otherwise.

    The likelihood then has its supremum only as b -> infinity: 0 for complete separation, the
    binomial likelihood of the mixed LR at its own rate for quasi-complete separation.
    """
    zero, full = c.k == 0, c.k == c.n
    first = int(np.argmax(~zero))  # the first LR with a collapse; every LR before it has none
    if full[first] and first > 0 and np.all(full[first:]):  # complete: the step is in a gap
        mid = float(0.5 * (c.x[first - 1] + c.x[first]))  # log-midpoint, by convention
        return _Mle("separated", -SLOPE_MAX * mid, SLOPE_MAX, 0.0, math.inf, mid)
    if not full[first] and np.all(full[first + 1:]):  # quasi-complete: one LR with mixed outcomes
        rate = float(c.k[first] / c.n[first])
        ll = float(c.k[first] * math.log(rate) + (c.n[first] - c.k[first]) * math.log1p(-rate))
        # The capped curve passes through the observed rate at that LR.
        a = float(logit(rate)) - SLOPE_MAX * float(c.x[first])
        return _Mle("separated", a, SLOPE_MAX, ll, math.inf, float(c.x[first]))
    return None


def _maximum_likelihood(c: _Counts) -> _Mle:
    """Maximum likelihood over 0 <= b <= SLOPE_MAX for mixed data at two or more LRs."""
    step = _separated(c)
    if step is not None:
        return step
    rate = float(c.k.sum() / c.n.sum())
    a_flat = float(logit(rate))
    # Score in b at the best flat curve: <= 0 means collapse does not rise with the LR, and by
    # concavity the maximum is at b = 0.
    if float(np.dot(c.x, c.k - c.n * rate)) <= 0:
        return _Mle("flat", a_flat, 0.0, c.loglik(np.full(c.x.shape, a_flat)), 0.0, None)

    centre = float(np.average(c.x, weights=c.n))
    xc = c.x - centre  # centred: a and b nearly uncorrelated, which helps the solver

    def score(p: np.ndarray) -> np.ndarray:
        resid = c.k - c.n * expit(p[0] + p[1] * xc)
        return np.array([resid.sum(), np.dot(resid, xc)])

    def minus_hessian(p: np.ndarray) -> np.ndarray:
        w = c.n * expit(p[0] + p[1] * xc) * expit(-(p[0] + p[1] * xc))
        wx = float(np.dot(w, xc))
        return np.array([[w.sum(), wx], [wx, float(np.dot(w, xc * xc))]])

    # Neither flat nor separated: the maximum is interior (0 < b < inf) and, the log-likelihood
    # being concave, it is the one root of the score, which MINPACK's hybrid Powell method finds
    # in a few steps (a bounded quasi-Newton minimiser took 30 times longer).
    res = root(score, np.array([a_flat, 1.0]), jac=lambda p: -minus_hessian(p), method="hybr",
               options=dict(xtol=1e-12))
    a_c, b = float(res.x[0]), float(res.x[1])
    if not (res.success and 0.0 < b < SLOPE_MAX and math.isfinite(a_c)):
        # Slope beyond the searched range (LRs a hair apart) or a failed solve: the bounded
        # solver, slower but sure to stay in range.
        res = minimize(lambda p: -c.loglik(p[0] + p[1] * xc), np.array([a_flat, 1.0]),
                       jac=lambda p: -score(p), method="L-BFGS-B",
                       bounds=[(None, None), (0.0, SLOPE_MAX)], options=dict(ftol=1e-14, gtol=1e-9))
        a_c, b = float(res.x[0]), float(res.x[1])
    ll = c.loglik(a_c + b * xc)
    a = a_c - b * centre
    if b <= 0.0:
        return _Mle("flat", a_flat, 0.0, max(ll, c.loglik(np.full(c.x.shape, a_flat))), 0.0, None)
    return _Mle("fit", a, b, ll, b, -a / b)


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

def _counts(lrs: Sequence[float], n_runs: Sequence[int], n_collapsed: Sequence[int]) -> _Counts:
    lr = np.asarray(lrs, dtype=float).ravel()
    n = np.asarray(n_runs, dtype=float).ravel()
    k = np.asarray(n_collapsed, dtype=float).ravel()
    if not (lr.shape == n.shape == k.shape):
        raise ValueError(f"lrs, n_runs and n_collapsed must have one entry each, but got "
                         f"lengths {lr.size}, {n.size}, {k.size}")
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


# --------------------------------------------------------------------------------------------
# Planning more runs
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LrRate:
    """Collapses at one LR: k of n runs, with the exact two-sided 95% Clopper-Pearson interval."""

    lr: float
    n: int
    k: int
    lo: float
    hi: float

    @property
    def rate(self) -> float:
        return self.k / self.n

    def straddles(self, q: float) -> bool:
        """The interval contains q: the data cannot yet tell whether the risk here is below or
        above q, so more seeds at this LR are informative."""
        return self.lo <= q <= self.hi


def rates_by_lr(lrs: Sequence[float], collapsed: Sequence[bool | int]) -> list[LrRate]:
    """Per distinct LR (ascending): runs, collapses and the exact 95% interval of the rate."""
    collapsed = np.asarray(collapsed, dtype=float).ravel()
    c = _counts(lrs, np.ones(collapsed.shape), collapsed)
    alpha = 1.0 - LEVEL
    out = []
    for lr, n, k in zip(c.lr, c.n, c.k):
        lo = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, alpha / 2))
        hi = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1 - alpha / 2))
        out.append(LrRate(float(lr), int(n), int(k), lo, hi))
    return out


def straddling_lrs(lrs: Sequence[float], collapsed: Sequence[bool | int], q: float = 0.5) -> list[float]:
    """The LRs whose exact 95% collapse-rate interval contains q (ascending)."""
    return [r.lr for r in rates_by_lr(lrs, collapsed) if r.straddles(q)]


@dataclass(frozen=True)
class Bracket:
    """Where the boundary lies on the tested grid.

    last_stable: the largest LR with no collapse that lies below `first_collapsing` (None when
    every LR below it had a collapse). first_collapsing: the smallest LR where at least half of
    the runs collapsed (None when there is none). New LRs between the two narrow the boundary.
    """

    last_stable: Optional[float]
    first_collapsing: Optional[float]

    @property
    def midpoint(self) -> Optional[float]:
        """The geometric mean of the two ends, when both exist."""
        if self.last_stable is None or self.first_collapsing is None:
            return None
        return math.sqrt(self.last_stable * self.first_collapsing)


def collapse_bracket(lrs: Sequence[float], collapsed: Sequence[bool | int]) -> Bracket:
    """The bracket of the collapse boundary from per-LR counts (see `Bracket`)."""
    rates = rates_by_lr(lrs, collapsed)
    first = next((r.lr for r in rates if 2 * r.k >= r.n), None)
    stable = [r.lr for r in rates if r.k == 0 and (first is None or r.lr < first)]
    return Bracket(stable[-1] if stable else None, first)
