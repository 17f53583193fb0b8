"""Planning more runs near a slice's collapse boundary (what `sweep refine` asks): per-LR collapse
rates with exact intervals, the LRs whose interval still straddles a risk, and the bracket between
the last stable and the first collapsing LR."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sweep.analysis.boundary.likelihood import _counts
from sweep.analysis.boundary.types import LEVEL
from sweep.analysis.noise import clopper_pearson

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
        lo, hi = clopper_pearson(k, n, alpha / 2)
        out.append(LrRate(float(lr), int(n), int(k), lo, hi))
    return out


def straddling_lrs(
    lrs: Sequence[float], collapsed: Sequence[bool | int], q: float = 0.5
) -> list[float]:
    """The LRs whose exact 95% collapse-rate interval contains q (ascending)."""
    return [r.lr for r in rates_by_lr(lrs, collapsed) if r.straddles(q)]


@dataclass(frozen=True)
class Bracket:
    """Where the boundary lies on the tested grid.

    last_stable: the largest LR with no collapse that lies below `first_collapsing` (None when
    every LR below it had a collapse). first_collapsing: the smallest LR where at least half of
    the runs collapsed (None when there is none). New LRs between the two narrow the boundary.
    """

    last_stable: float | None
    first_collapsing: float | None

    @property
    def midpoint(self) -> float | None:
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
