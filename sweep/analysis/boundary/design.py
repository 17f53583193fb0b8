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
candidates are the lr at the current lr_at_10 estimate and 1/8 decade either side of it, the safe
LR itself, the geometric midpoint of the bracket, and the tested lrs between the safe LR and the
upper end of lr_at_10's interval. A candidate within x1.2 of a tested lr is that lr (more seeds
there), otherwise a new lr on a 1/8-decade ladder, so new lrs never crowd; lrs that hold the most
runs one lr may (refine.max_seeds) are left out, and when every lr near the boundary does, the
next ladder lrs out are tried. For each candidate, a cohort's outcomes are taken at their
expected values under the fitted curve, the posterior is recomputed (every candidate in one
batch), and the highest expected safe LR wins (ties: the narrowest hi / safe ratio).
`benchmarks/bench_refine.py` measures this design against a dense grid and BOIN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from sweep.analysis.boundary.exact import runs_needed
from sweep.analysis.boundary.fit import BoundaryFit
from sweep.analysis.boundary.penalized import Posterior
from sweep.analysis.boundary.types import LEVEL, SAFE_RISK, _fmt

RESOLVE_FACTOR = 10**0.25  # refine.factor's default: a quarter decade (x1.78)
NEAR = 10**0.08  # a candidate lr within this factor (x1.2) of a tested lr is that lr
LADDER_STEP = 1 / 8  # decades between the lrs a round may add
RUN_COUNTS = (3, 6, 12, 24, 48, 96, 192)  # run counts tried by runs_to_resolve


@dataclass(frozen=True)
class BoundaryBracket:
    """The tested lrs either side of the first failure: `lo`, the largest lr without any failure
    below `hi`, the smallest lr with one (either None when there is none)."""

    lo: float | None
    lo_failed: int
    lo_runs: int
    hi: float | None
    hi_failed: int
    hi_runs: int
    adjacent: bool  # no tested lr lies between the two

    def text(self) -> str:
        if self.lo is None or self.hi is None:
            return ""
        return (
            f"between lr {_fmt(self.lo)} ({self.lo_failed}/{self.lo_runs} collapsed) and lr {_fmt(self.hi)} "
            f"({self.hi_failed}/{self.hi_runs})"
        )


def boundary_bracket(
    lrs: Sequence[float], runs: Sequence[int], failed: Sequence[int]
) -> BoundaryBracket:
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
    """Runs at one lr: `new` when the lr has no runs yet, `why` says what they are for."""

    lr: float
    runs: int
    why: str
    new: bool = True


def _round_lr(lr: float) -> float:
    return float(f"{lr:.3g}")


def _expected_bounds(fit: BoundaryFit, plans: list[dict[float, float]]) -> np.ndarray:
    """log10 of (safe LR, upper 95% end of lr_at_10) after adding the runs of each plan
    ({lr: runs}), their outcomes at the fitted curve's expected values; the safe LR is -inf where
    it stays below the tested range. One row per plan."""
    c = fit._counts
    lrs = sorted(set(c.lr.tolist()) | {lr for p in plans for lr in p})
    x = np.log10(lrs)
    base_n = np.array([float(c.n[c.lr == lr].sum()) for lr in lrs])
    base_k = np.array([float(c.k[c.lr == lr].sum()) for lr in lrs])
    risk = (
        expit(fit._a + fit._b * x)
        if fit.modelled
        else np.full(len(lrs), fit.n_collapsed / fit.n_runs)
    )
    add = np.array([[p.get(lr, 0.0) for lr in lrs] for p in plans])
    n = base_n + add
    k = base_k + add * risk
    q = Posterior(x, n, k).quantiles(SAFE_RISK, [1 - LEVEL, (1 + LEVEL) / 2])
    lo_edge = min(x[0], float(c.x[0]))
    return np.column_stack([np.where(q[:, 0] >= lo_edge, q[:, 0], -np.inf), q[:, 1]])


def _expected_ratio(fit: BoundaryFit, plans: list[dict[float, float]]) -> np.ndarray:
    """log10(hi / safe) of lr_at_10 after each plan (inf where the safe LR stays below the range)."""
    b = _expected_bounds(fit, plans)
    return b[:, 1] - b[:, 0]


def _on_ladder(lr: float) -> float:
    """The nearest lr of the ladder new lrs sit on: 1/8 decade apart (x1.33), through 1."""
    return float(f"{10 ** (round(math.log10(lr) / LADDER_STEP) * LADDER_STEP):.3g}")


def _candidates(
    fit: BoundaryFit, bracket: BoundaryBracket, full: frozenset[float] = frozenset()
) -> dict[float, str]:
    """Candidate lrs of a modelled slice, each with why it is a candidate. A candidate within
    x1.2 of a tested lr is that lr, otherwise the nearest lr of the 1/8-decade ladder (new lrs
    never crowd: more runs at one place come as seeds); one at a `full` lr (it holds the most
    runs one lr may) is left out."""
    tested = fit._counts.lr.tolist()
    out: dict[float, str] = {}

    def add(lr: float, why: str) -> None:
        near = min(tested, key=lambda t: abs(math.log(t / lr)))
        lr = near if max(near, lr) / min(near, lr) <= NEAR else _on_ladder(lr)
        if lr not in full:
            out.setdefault(lr, why)

    r = fit.at_10
    if r.kind == "fit" and r.estimate is not None:
        add(r.estimate, f"at the estimated lr_at_10 ({_fmt(r.estimate)})")
        for step in (-1, 1):
            lr = r.estimate * 10 ** (step * LADDER_STEP)
            add(
                lr,
                f"1/8 decade {'below' if step < 0 else 'above'} the estimated lr_at_10 ({_fmt(r.estimate)})",
            )
    elif r.kind == "below" or fit.safe.kind == "below":
        add(
            fit.lr_min / 3, f"below the smallest lr tried ({_fmt(fit.lr_min)}): lr_at_10 lies lower"
        )
    if fit.safe.kind == "inside":
        add(
            fit.safe.lr,
            f"at the safe lr ({_fmt(fit.safe.lr)}): runs there without a collapse raise it",
        )
    if bracket.lo is not None and bracket.hi is not None:
        add(
            math.sqrt(bracket.lo * bracket.hi),
            f"the geometric midpoint of the bracket {bracket.text()}",
        )
    safe = fit.safe.lr if fit.safe.kind == "inside" else fit.lr_min
    top = r.hi if r.kind == "fit" and r.hi is not None else fit.lr_max
    for lr in tested:
        if safe <= lr <= top:
            add(lr, "between the safe lr and the upper end of lr_at_10's 95% interval")
    fitted = r.kind == "fit" and r.estimate is not None
    centre, named = (r.estimate, "the estimated lr_at_10") if fitted else (safe, "the safe lr")
    for step in range(
        2, 9
    ):  # every lr near the boundary holds the most runs: the next ladder lrs out
        if out:
            break
        for sign in (-1, 1):
            add(
                centre * 10 ** (sign * step * LADDER_STEP),
                f"{step}/8 decade {'below' if sign < 0 else 'above'} {named}: the lrs nearer hold "
                f"the most runs one lr may (refine.max_seeds)",
            )
    return out


def next_cohorts(
    fit: BoundaryFit,
    new_runs: int,
    extra_runs: int,
    max_cohorts: int = 2,
    runs_at: dict[float, int] | None = None,
    max_runs_per_lr: int = 20,
) -> list[Cohort]:
    """One round of a slice: up to `max_cohorts` cohorts at different lrs (a new lr gets
    `new_runs`, a tested one `extra_runs`), best first; [] when nothing can be added."""
    c = fit._counts
    runs_at = runs_at or {float(lr): int(n) for lr, n in zip(c.lr, c.n)}
    if fit.n_collapsed == 0:
        return [
            Cohort(
                _round_lr(fit.lr_max * 3),
                new_runs,
                f"no collapse up to lr {_fmt(fit.lr_max)}: extend upward to find the edge",
            )
        ]
    rates = c.k / c.n
    if np.all(rates >= 0.5):
        return [
            Cohort(
                _round_lr(fit.lr_min / 3),
                new_runs,
                f"collapse at lr {_fmt(fit.lr_min)} already (half its runs or more): extend downward",
            )
        ]
    bracket = boundary_bracket(c.lr, c.n, c.k)
    full = frozenset(lr for lr, n in runs_at.items() if n >= max_runs_per_lr)
    cands = _candidates(fit, bracket, full)  # full lrs are left out there
    if not cands:
        return []
    lrs = list(cands)
    sizes = [extra_runs if lr in runs_at else new_runs for lr in lrs]
    b = _expected_bounds(fit, [{lr: float(m)} for lr, m in zip(lrs, sizes)])
    order = np.lexsort(
        (b[:, 1] - b[:, 0], -b[:, 0])
    )  # the highest expected safe LR, then the narrowest
    return [
        Cohort(lrs[i], sizes[i], cands[lrs[i]], lrs[i] not in runs_at) for i in order[:max_cohorts]
    ]


def runs_to_resolve(fit: BoundaryFit, factor: float) -> int | None:
    """Runs until the slice is `resolved`, if outcomes follow the fitted curve: the smallest count
    of 3, 6, ..., 192 that, split over the two lrs `next_cohorts` picks (where `sweep refine`'s
    next round goes), brings lr_at_10's upper 95% end within
    `factor` of the safe LR. 0 when resolved already, None when even 192 do not (or the slice has
    no fitted curve to plan on: without any collapse, `runs_needed` runs at the largest lr show
    every lr tried safe; see SafeLR's note)."""
    if resolved(fit, factor):
        return 0
    if fit.status == "no-collapse":
        return max(runs_needed(SAFE_RISK) - int(fit._counts.n[-1]), 0)
    if not fit.modelled or fit.status == "flat":
        return None
    cands = [c.lr for c in next_cohorts(fit, 3, 3, max_runs_per_lr=10**9)]
    if not cands:
        return None
    plans = [{lr: m / len(cands) for lr in cands} for m in RUN_COUNTS]
    ok = np.flatnonzero(_expected_ratio(fit, plans) <= math.log10(factor))
    return RUN_COUNTS[int(ok[0])] if len(ok) else None
