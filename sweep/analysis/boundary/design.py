"""Where more runs narrow the safe LR of a slice (what `sweep refine` asks, and what a verdict
says it would take), from the slice's per-lr counts.

Usage::

    b = boundary_bracket(lrs, runs, failed)    # the tested lrs either side of the first collapse
    b.text()                                   # "between lr 0.3 (0/5 collapsed) and lr 1 (4/5)"
    next_cohorts(fit, ...)                     # [Cohort(lr, runs, why), ...]: one round's runs
    runs_to_resolve(fit, factor)               # runs until the safe LR is within `factor` of lr_at_10

Resolved: the safe LR lies within `factor` below the upper end of lr_at_10's 95% interval
(`resolved`), so it is at most that factor below the true lr_at_10 with 95% confidence.

A round's runs go where they are expected to raise the safe LR most (a one-step look-ahead
design, the kind the continual reassessment method uses for the dose at a target toxicity): the
candidates are the lr at the current lr_at_10 estimate, the geometric midpoint of the bracket
and the tested lrs between the safe LR and the upper end; for each, a cohort's outcomes are taken
at their expected values under the fitted curve, the posterior is recomputed (every candidate in
one batch), and the candidates with the smallest expected hi / safe ratio win.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy.special import expit

from sweep.analysis.boundary.exact import runs_needed
from sweep.analysis.boundary.fit import BoundaryFit
from sweep.analysis.boundary.penalized import Posterior
from sweep.analysis.boundary.types import LEVEL, SAFE_RISK, _fmt

RESOLVE_FACTOR = 10 ** 0.25  # refine.factor's default: a quarter decade (x1.78)
NEAR = 10 ** 0.08  # a candidate lr within this factor (x1.2) of a tested lr is that lr
LADDER = (3, 6, 12, 24, 48, 96, 192)  # run counts tried by runs_to_resolve


@dataclass(frozen=True)
class BoundaryBracket:
    """The tested lrs either side of the first failure: `lo`, the largest lr without any failure
    below `hi`, the smallest lr with one (either None when there is none)."""

    lo: Optional[float]
    lo_failed: int
    lo_runs: int
    hi: Optional[float]
    hi_failed: int
    hi_runs: int
    adjacent: bool  # no tested lr lies between the two

    def text(self) -> str:
        if self.lo is None or self.hi is None:
            return ""
        return (f"between lr {_fmt(self.lo)} ({self.lo_failed}/{self.lo_runs} collapsed) and lr {_fmt(self.hi)} "
                f"({self.hi_failed}/{self.hi_runs})")


def boundary_bracket(lrs: Sequence[float], runs: Sequence[int], failed: Sequence[int]) -> BoundaryBracket:
    """The bracket of the lr at 10% risk on the tested grid (ascending lrs with their counts)."""
    rows = sorted((float(lr), int(n), int(k)) for lr, n, k in zip(lrs, runs, failed) if n > 0)
    first = next((i for i, (_, _, k) in enumerate(rows) if k > 0), None)
    if first is None:
        return BoundaryBracket(None, 0, 0, None, 0, 0, False)
    below = [i for i in range(first) if rows[i][2] == 0]
    hi = rows[first]
    if not below:
        return BoundaryBracket(None, 0, 0, hi[0], hi[2], hi[1], False)
    lo = rows[below[-1]]
    return BoundaryBracket(lo[0], lo[2], lo[1], hi[0], hi[2], hi[1], below[-1] == first - 1)


def resolved(fit: BoundaryFit, factor: float) -> bool:
    """Is the safe LR within `factor` below the upper end of lr_at_10's 95% interval?"""
    r, s = fit.at_10, fit.safe
    if s.kind == "above":
        return True
    return s.kind == "inside" and r.kind == "fit" and r.hi is not None and r.hi / s.lr <= factor


@dataclass(frozen=True)
class Cohort:
    lr: float
    runs: int
    why: str


def _round_lr(lr: float) -> float:
    return float(f"{lr:.3g}")


def _expected_ratio(fit: BoundaryFit, plans: list[dict[float, float]]) -> np.ndarray:
    """log10(hi / safe) of lr_at_10 after adding the runs of each plan ({lr: runs}), their outcomes
    at the fitted curve's expected values (inf where the safe LR stays below the tested range)."""
    c = fit._counts
    lrs = sorted(set(c.lr.tolist()) | {lr for p in plans for lr in p})
    x = np.log10(lrs)
    base_n = np.array([float(c.n[c.lr == lr].sum()) for lr in lrs])
    base_k = np.array([float(c.k[c.lr == lr].sum()) for lr in lrs])
    risk = expit(fit._a + fit._b * x) if fit.modelled else np.full(len(lrs), fit.n_collapsed / fit.n_runs)
    add = np.array([[p.get(lr, 0.0) for lr in lrs] for p in plans])
    n = base_n + add
    k = base_k + add * risk
    q = Posterior(x, n, k).quantiles(SAFE_RISK, [1 - LEVEL, (1 + LEVEL) / 2])
    lo_edge = min(x[0], float(c.x[0]))
    return np.where(q[:, 0] >= lo_edge, q[:, 1] - q[:, 0], np.inf)


def _candidates(fit: BoundaryFit, bracket: BoundaryBracket) -> dict[float, str]:
    """Candidate lrs of a modelled slice, each with why it is a candidate."""
    tested = fit._counts.lr.tolist()
    out: dict[float, str] = {}

    def add(lr: float, why: str) -> None:
        near = [t for t in tested if max(t, lr) / min(t, lr) <= NEAR]
        lr = near[0] if near else _round_lr(lr)
        out.setdefault(lr, why if not near else f"more seeds at lr {_fmt(lr)}: {why}")

    r = fit.at_10
    if r.kind == "fit" and r.estimate is not None:
        add(r.estimate, f"at the estimated lr_at_10 ({_fmt(r.estimate)})")
    elif r.kind == "below" or fit.safe.kind == "below":
        add(fit.lr_min / 3, f"below the smallest lr tried ({_fmt(fit.lr_min)}): lr_at_10 lies lower")
    if bracket.lo is not None and bracket.hi is not None:
        add(math.sqrt(bracket.lo * bracket.hi), f"the geometric midpoint of the bracket {bracket.text()}")
    safe = fit.safe.lr if fit.safe.kind == "inside" else fit.lr_min
    top = r.hi if r.kind == "fit" and r.hi is not None else fit.lr_max
    for lr in tested:
        if safe <= lr <= top:
            add(lr, f"between the safe lr and the upper end of lr_at_10's interval")
    return out


def next_cohorts(fit: BoundaryFit, new_runs: int, extra_runs: int, max_cohorts: int = 2,
                 runs_at: Optional[dict[float, int]] = None, max_runs_per_lr: int = 20) -> list[Cohort]:
    """One round of a slice: up to `max_cohorts` cohorts at different lrs (a new lr gets
    `new_runs`, a tested one `extra_runs`), best first; [] when nothing can be added."""
    c = fit._counts
    runs_at = runs_at or {float(lr): int(n) for lr, n in zip(c.lr, c.n)}
    if fit.n_collapsed == 0:
        return [Cohort(_round_lr(fit.lr_max * 3), new_runs,
                       f"no collapse up to lr {_fmt(fit.lr_max)}: extend upward to find the edge")]
    rates = c.k / c.n
    if np.all(rates >= 0.5):
        return [Cohort(_round_lr(fit.lr_min / 3), new_runs,
                       f"collapse at lr {_fmt(fit.lr_min)} already: extend downward")]
    bracket = boundary_bracket(c.lr, c.n, c.k)
    cands = {lr: why for lr, why in _candidates(fit, bracket).items() if runs_at.get(lr, 0) < max_runs_per_lr}
    if not cands:
        return []
    lrs = list(cands)
    sizes = [extra_runs if lr in runs_at else new_runs for lr in lrs]
    score = _expected_ratio(fit, [{lr: float(m)} for lr, m in zip(lrs, sizes)])
    order = np.argsort(score, kind="stable")
    return [Cohort(lrs[i], sizes[i], cands[lrs[i]]) for i in order[:max_cohorts]]


def runs_to_resolve(fit: BoundaryFit, factor: float) -> Optional[int]:
    """Runs until the slice is `resolved`, if outcomes follow the fitted curve: the smallest count
    on the ladder 3, 6, ..., 192 that, split over the lr at the estimated lr_at_10 and the
    bracket's midpoint (as `sweep refine` places them), brings lr_at_10's upper 95% end within
    `factor` of the safe LR. 0 when resolved already, None when even 192 do not (or the slice has
    no fitted curve to plan on: without any collapse, `runs_needed` runs at the largest lr show
    every lr tried safe; see SafeLR's note)."""
    if resolved(fit, factor):
        return 0
    if fit.status == "no-collapse":
        return max(runs_needed(SAFE_RISK) - int(fit._counts.n[-1]), 0)
    if not fit.modelled or fit.status == "flat":
        return None
    cands = list(_candidates(fit, boundary_bracket(fit._counts.lr, fit._counts.n, fit._counts.k)))[:2]
    plans = [{lr: m / len(cands) for lr in cands} for m in LADDER]
    ok = np.flatnonzero(_expected_ratio(fit, plans) <= math.log10(factor))
    return LADDER[int(ok[0])] if len(ok) else None
