"""The collapse boundary of one slice: the learning rate at 10% and at 50% collapse risk, and the
safe LR (the largest LR whose risk is below 10% with 95% confidence).

A *slice* is every run that shares all grid axes except the learning rate. For each run we know
its learning rate and whether it collapsed::

    fit = fit_boundary(lrs, collapsed)          # one lr and one 0/1 per run of the slice
    fit.at_10.text()                            # "0.3 (95% CI 0.1-0.69)"
    fit.safe.text()      # "lr <= 0.14 keeps the collapse risk under 10% (95% confidence, 25 runs)"
    fit.at_50.kind, fit.at_50.lo                # "above", 0.3: lr_at_50 > 0.3 (95% confidence)

Model
-----
P(collapse | lr) = expit(a + b*x), x = log10(lr), b >= 0 (per decade): monotone in the lr. The
LR at risk q is x_q = (logit(q) - a) / b. Only per-LR counts enter (runs n_i, collapses k_i).

Estimator (chosen by simulation: docs/statistics.md, tests/test_boundary_simulation.py)
---------------------------------------------------------------------------------------
With 3-10 seeds per LR, complete or quasi-complete separation is the usual case (0/5 at one lr,
most runs collapsed at the next). Maximum likelihood is then a step; the landed convention put
lr_at_10 and lr_at_50 both at the step, the most optimistic place the data allow (in simulation
half of such lr_at_10 lay where the true risk was already 30% or more at steep slopes). Now:

- point estimates: Firth's penalised likelihood, l(a, b) + 1/2 log det I(a, b) (Firth 1993;
  Heinze & Schemper 2002). It is finite under separation and shrinks the slope towards what the
  counts support, so lr_at_10 moves off the step towards the stable side.
- 95% intervals and the safe LR: the posterior under the same Jeffreys prior |I|^(1/2), whose
  mode Firth's estimate is: the equal-tailed 95% interval of x_q, and the safe LR is the 5%
  quantile of x_10 (a one-sided 95% bound; never above the point estimate). In simulation these
  cover at 93.4-98.1% per slope (the table of tests/test_boundary_simulation.py, quoted in
  docs/statistics.md; the test requires 93-97% pooled over the design space and 91-98.5% at each
  slope), where the penalised profile-likelihood intervals covered lr_at_50 at up to 98.3% and
  put the safe LR past the truth in only ~1% of fits (too cautious), and the unpenalised profile
  of the landed version covered at 92-97%.
- Slope-prior posterior medians (Gelman et al. 2008's Cauchy) and the posterior median under the
  Jeffreys prior put lr_at_10 where the risk was >= 30% in 9-15% of fits; Firth's, in <= 3%.

Never extrapolate silently
--------------------------
The tested range is [min lr, max lr] of the slice. A result (`RiskLR`) has one of four kinds:
"fit" (an estimate inside the tested range with its 95% interval; an end beyond the range is
None, printed as "<lr_min" or ">lr_max"; at least one end inside), "above" (lr_at_q > lo with 95%
confidence), "below" (lr_at_q < hi), "unknown" (nothing in the tested range is excluded).
The safe LR (`SafeLR`) is "inside" (a number in the range), "below" (not even the smallest lr
tried is shown safe) or "above" (every lr tried is).

Degenerate data (bounds, never errors): no runs, no collapse at all, every run collapsed, or a
single lr: exact one-sided 95% bounds from monotonicity alone (`sweep.analysis.boundary.exact`).
Collapse that does not increase with the lr: the slope is clamped at 0 (status "flat") and
every risk level is "unknown".

Figures: `BoundaryFit.risk(lr)` is the fitted curve and `BoundaryFit.band(lr)` the pointwise 95%
posterior band; both NaN outside the tested range unless asked to extrapolate.

Cost: one fit is a Firth Newton solve and one posterior on a 200 x 48 grid over (x50, log b):
about 10 ms, and a band on 30 points 10 ms more (benchmarks/bench_boundary.py --fit). A fit is
cached by its counts: the report asks for each slice's fit several times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.special import expit, logit

from sweep.analysis.boundary import exact
from sweep.analysis.boundary.likelihood import (
    _Counts,
    _counts,
    _risk_bound_note,
    _separated,
    _statement,
)
from sweep.analysis.boundary.penalized import Posterior, firth_fit, penalized_loglik
from sweep.analysis.boundary.plan import (
    Bracket,
    LrRate,
    collapse_bracket,
    rates_by_lr,
    straddling_lrs,
)
from sweep.analysis.boundary.types import (
    CHI2_95,
    KINDS,
    LEVEL,
    SAFE_RISK,
    STATUSES,
    RiskLR,
    SafeLR,
)

__all__ = [
    "CHI2_95",
    "KINDS",
    "STATUSES",
    "BoundaryFit",
    "RiskLR",
    "SafeLR",
    "fit_boundary",
    "fit_boundary_counts",
    "fit_boundary_batch",
    "risk_lr",
    "Bracket",
    "LrRate",
    "collapse_bracket",
    "rates_by_lr",
    "straddling_lrs",
]

_LEVELS = ((1 - LEVEL) / 2, 1 - LEVEL, (1 + LEVEL) / 2)  # 2.5%, 5%, 97.5%


@dataclass(frozen=True)
class BoundaryFit:
    """The fitted collapse curve of one slice, its two reported risk levels and the safe LR.

    status: "empty" (no runs), "no-collapse", "all-collapsed", "single-lr" (one distinct LR,
    mixed outcomes), "separated" (complete or quasi-complete separation: maximum likelihood would
    be a step; Firth's fit is finite), "flat" (collapse does not increase with the LR: slope 0),
    "fit" (otherwise).
    slope: Firth's b per decade (0.0 when flat; None when the data say nothing about it).
    x50: log10 of the LR at 50% risk on Firth's curve (None when flat or degenerate); it may lie
    outside the tested range: report `at_50`, which never extrapolates.
    loglik: the penalised log-likelihood at Firth's estimate (0 for degenerate data).
    """

    n_runs: int
    n_collapsed: int
    lr_min: float
    lr_max: float
    n_lrs: int
    status: str
    slope: float | None
    x50: float | None
    at_10: RiskLR
    at_50: RiskLR
    safe: SafeLR
    loglik: float
    _a: float = field(repr=False)  # risk = expit(a + b*log10(lr))
    _b: float = field(repr=False)
    _counts: _Counts = field(repr=False, compare=False)
    _post: Posterior | None = field(default=None, repr=False, compare=False)
    # The posterior's 95% interval of log10(lr_at_q) for q = 0.1 and 0.5 before the tested range
    # cuts it (what calibration measures); empty for degenerate data.
    raw_intervals: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def modelled(self) -> bool:
        """A logistic fit (mixed outcomes at two or more lrs), not an exact bound."""
        return self.status in ("separated", "flat", "fit")

    def at(self, q: float) -> RiskLR:
        """The LR at any risk level 0 < q < 1, with the same rules as `at_10` and `at_50`."""
        return risk_lr(self, q)

    def _x(self, lr, extrapolate: bool) -> tuple[np.ndarray, np.ndarray]:
        lr = np.atleast_1d(np.asarray(lr, dtype=float))
        if np.any(~(lr > 0)):
            raise ValueError(f"learning rates must be > 0, but got {lr}")
        x = np.log10(lr)
        inside = (
            np.full(x.shape, True)
            if extrapolate
            else ((lr >= self.lr_min * (1 - 1e-12)) & (lr <= self.lr_max * (1 + 1e-12)))
        )
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

    def band(
        self, lr, level: float = LEVEL, extrapolate: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise 95% band (lo, hi) of P(collapse) at each lr: the posterior's equal-tailed
        interval of the risk there (exact monotone bounds for degenerate data), widened where
        needed to hold the fitted curve. NaN outside the tested range unless `extrapolate`."""
        x, inside = self._x(lr, extrapolate)
        if self.status == "empty":
            lo, hi = np.zeros(x.shape), np.ones(x.shape)
        elif self._post is None:
            lo, hi = exact.exact_band(self._counts, self.status, x, level)
        else:
            q = self._post.band(x, [(1 - level) / 2, (1 + level) / 2])[0]
            p = expit(self._a + self._b * x)
            lo, hi = np.minimum(q[:, 0], p), np.maximum(q[:, 1], p)
        return np.where(inside, lo, math.nan), np.where(inside, hi, math.nan)


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def fit_boundary(lrs: Sequence[float], collapsed: Sequence[bool | int]) -> BoundaryFit:
    """Fit the collapse curve of one slice from run-level outcomes (one lr and 0/1 per run)."""
    collapsed = np.asarray(collapsed).ravel()
    if collapsed.size and not np.all((collapsed == 0) | (collapsed == 1)):
        raise ValueError(f"collapsed must be 0/1 or bool per run, but got {np.unique(collapsed)}")
    return fit_boundary_counts(lrs, np.ones(collapsed.shape), collapsed.astype(float))


def fit_boundary_counts(
    lrs: Sequence[float], n_runs: Sequence[int], n_collapsed: Sequence[int]
) -> BoundaryFit:
    """Fit the collapse curve from counts: per entry an lr, its runs and its collapsed runs.

    Entries with the same lr are pooled; entries with 0 runs are ignored. Fits are cached by
    their counts (a BoundaryFit is immutable).
    """
    return _fit(_counts(lrs, n_runs, n_collapsed).key)


def fit_boundary_batch(
    lrs: Sequence[float], n_runs: Sequence[int], n_collapsed: np.ndarray, chunk: int = 100
) -> list[BoundaryFit]:
    """`fit_boundary_counts` for many slices that share one design (lrs and runs per lr), one
    row of `n_collapsed` (B, L) each: the same fits, computed together (what the simulation
    tests and benchmarks use; the report fits one slice at a time)."""
    rows = np.atleast_2d(np.asarray(n_collapsed, dtype=float))
    counts = [_counts(lrs, n_runs, r) for r in rows]
    mixed = [i for i, c in enumerate(counts) if 0 < c.k.sum() < c.n.sum() and len(c.x) > 1]
    out: list[BoundaryFit | None] = [
        None if i in set(mixed) else _fit(c.key) for i, c in enumerate(counts)
    ]
    if mixed:
        c0 = counts[mixed[0]]
        k = np.array([counts[i].k for i in mixed])
        for start in range(0, len(mixed), chunk):
            part = slice(start, start + chunk)
            a, b = firth_fit(c0.x, c0.n, k[part])
            post = Posterior(c0.x, c0.n, k[part])
            q10, q50 = post.quantiles(0.1, _LEVELS), post.quantiles(0.5, _LEVELS)
            for j, i in enumerate(mixed[part]):
                out[i] = _modelled(counts[i], float(a[j]), float(b[j]), post[j], q10[j], q50[j])
    return out


@lru_cache(maxsize=512)
def _fit(key: tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]) -> BoundaryFit:
    c = _counts(*key)
    n, k = int(c.n.sum()), int(c.k.sum())
    if n == 0:
        unknown = [RiskLR(q, None, None, None, "unknown", note="no runs") for q in (0.1, 0.5)]
        return BoundaryFit(
            0,
            0,
            math.nan,
            math.nan,
            0,
            "empty",
            None,
            None,
            *unknown,
            safe=SafeLR(None, "unknown", note="no runs"),
            loglik=0.0,
            _a=math.nan,
            _b=math.nan,
            _counts=c,
        )
    common = dict(
        n_runs=n,
        n_collapsed=k,
        lr_min=float(c.lr[0]),
        lr_max=float(c.lr[-1]),
        n_lrs=len(c.x),
        _counts=c,
    )
    degenerate = {0: "no-collapse", n: "all-collapsed"}.get(k) or (
        "single-lr" if len(c.x) == 1 else None
    )
    if degenerate is not None:
        statement = {
            "no-collapse": exact.no_collapse_statement,
            "all-collapsed": exact.all_collapsed_statement,
            "single-lr": exact.single_lr_statement,
        }[degenerate]
        rate = k / n
        a = -math.inf if k == 0 else math.inf if k == n else float(logit(rate))
        return BoundaryFit(
            status=degenerate,
            slope=None,
            x50=None,
            at_10=statement(c, 0.1),
            at_50=statement(c, 0.5),
            safe=exact.exact_safe(c, degenerate),
            loglik=0.0,
            _a=a,
            _b=0.0,
            **common,
        )
    a, b = (float(v[0]) for v in firth_fit(c.x, c.n, c.k[None, :]))
    post = Posterior(c.x, c.n, c.k[None, :])
    return _modelled(
        c, a, b, post, post.quantiles(0.1, _LEVELS)[0], post.quantiles(0.5, _LEVELS)[0]
    )


def _modelled(
    c: _Counts, a: float, b: float, post: Posterior, q10: np.ndarray, q50: np.ndarray
) -> BoundaryFit:
    """The fit of mixed data at two or more lrs from Firth's (a, b), the posterior and its 2.5%,
    5% and 97.5% quantiles of x_10 and x_50."""
    common = dict(
        n_runs=int(c.n.sum()),
        n_collapsed=int(c.k.sum()),
        lr_min=float(c.lr[0]),
        lr_max=float(c.lr[-1]),
        n_lrs=len(c.x),
        _counts=c,
    )
    status = "flat" if b <= 0 else "separated" if _separated(c) else "fit"
    ll = float(penalized_loglik(c.x, c.n, c.k[None, :], np.array([a]), np.array([b]))[0])
    curve = BoundaryFit(
        status=status,
        slope=b,
        x50=-a / b if b > 0 else None,
        at_10=None,
        at_50=None,
        safe=None,
        loglik=ll,
        _a=a,
        _b=b,
        _post=post,
        **common,
    )
    raw = {0.1: (float(q10[0]), float(q10[2])), 0.5: (float(q50[0]), float(q50[2]))}
    return BoundaryFit(
        **{
            **curve.__dict__,
            "at_10": _risk(curve, 0.1, q10),
            "at_50": _risk(curve, 0.5, q50),
            "safe": _safe(curve, float(q10[1])),
            "raw_intervals": raw,
        }
    )


def _firth_x(fit: BoundaryFit, q: float) -> float:
    """x_q on Firth's curve: +-inf when a flat curve never reaches q, NaN when it sits at q."""
    eta = float(logit(q))
    if fit._b > 0:
        return (eta - fit._a) / fit._b
    return math.inf if fit._a < eta else (-math.inf if fit._a > eta else math.nan)


def risk_lr(fit: BoundaryFit, q: float) -> RiskLR:
    """The LR at collapse risk q (0 < q < 1) of a fitted slice, with its 95% interval or bound."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must lie strictly between 0 and 1, but got {q}")
    c = fit._counts
    if fit.status == "empty":
        return RiskLR(q, None, None, None, "unknown", note="no runs")
    if not fit.modelled:
        statement = {
            "no-collapse": exact.no_collapse_statement,
            "all-collapsed": exact.all_collapsed_statement,
            "single-lr": exact.single_lr_statement,
        }[fit.status]
        return statement(c, q)
    return _risk(fit, q, fit._post.quantiles(q, _LEVELS)[0])


def _risk(fit: BoundaryFit, q: float, quantiles: np.ndarray) -> RiskLR:
    """RiskLR of a modelled fit from the posterior's (2.5%, 5%, 97.5%) quantiles of x_q."""
    if fit.status == "flat":
        return _statement(fit._counts, q, math.nan, -math.inf, math.inf, _risk_bound_note(q, 0.0))
    return _statement(fit._counts, q, _firth_x(fit, q), float(quantiles[0]), float(quantiles[2]))


def _safe(fit: BoundaryFit, bound: float) -> SafeLR:
    """The 5% posterior quantile of x_10 (`bound`), never above Firth's lr_at_10, as a SafeLR."""
    c = fit._counts
    x0, x1 = float(c.x[0]), float(c.x[-1])
    if fit.status != "flat":
        bound = min(bound, _firth_x(fit, SAFE_RISK))
    base = dict(
        lr_min=fit.lr_min, lr_max=fit.lr_max, n_runs=fit.n_runs, n_collapsed=fit.n_collapsed
    )
    if not bound >= x0:
        return SafeLR(None, "below", **base)
    if bound >= x1:
        return SafeLR(fit.lr_max, "above", **base)
    return SafeLR(min(max(10.0**bound, fit.lr_min), fit.lr_max), "inside", **base)
