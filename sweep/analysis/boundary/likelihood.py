"""The likelihood machinery of a boundary fit: per-LR counts, the (profile) log-likelihood of the
monotone logistic model, its maximum, and the profile-likelihood statements and bands."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
from scipy.optimize import brentq, minimize, root
from scipy.special import expit, log_expit, logit

from sweep.analysis.boundary.types import _ETA_LIMIT, _X_TOL, CHI2_95, SLOPE_MAX, SLOPE_MIN, RiskLR, _fmt, _pct


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
