"""The results of a boundary fit: `RiskLR`, the LR at one collapse risk with its 95% interval or
the bound the data support, and `SafeLR`, the largest LR whose collapse risk is below 10% with 95%
confidence (see `sweep.analysis.boundary` for the model and the rules)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.special import chdtri

LEVEL = 0.95
# Likelihood-ratio cut for a 95% interval: the chi-square (1 df) 95% quantile, 3.841.
CHI2_95 = float(chdtri(1, 1 - LEVEL))
# The safe LR: risk below SAFE_RISK with one-sided LEVEL confidence.
SAFE_RISK = 0.1

KINDS = ("fit", "above", "below", "unknown")
SAFE_KINDS = ("inside", "below", "above", "unknown")
STATUSES = ("empty", "no-collapse", "all-collapsed", "single-lr", "separated", "flat", "fit")


def _fmt(lr: float) -> str:
    return f"{lr:.2g}"


def _pct(q: float) -> str:
    return f"{100 * q:g}"


def _runs(n: float) -> str:
    return "1 run" if n == 1 else f"{int(n)} runs"


@dataclass(frozen=True)
class RiskLR:
    """The LR at collapse risk `q`, as far as the data support it (all values in LR units).

    kind "fit": `estimate` (Firth's) with its equal-tailed 95% posterior interval [lo, hi] (the
    Jeffreys prior; `sweep.analysis.boundary.fit`); an end that lies beyond the tested range
    [lr_min, lr_max] is None (`open_below` / `open_above`).
    kind "above": lr_at_q > `lo` with 95% confidence (estimate None, hi None).
    kind "below": lr_at_q < `hi` with 95% confidence (estimate None, lo None).
    kind "unknown": nothing within the tested range is excluded; `note` says what is known.
    """

    q: float
    estimate: float | None
    lo: float | None
    hi: float | None
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
            sep = (
                "-"
                if (self.lo is not None and self.hi is not None and "e" not in lo + hi)
                else " to "
            )
            return f"{_fmt(self.estimate)} (95% CI {lo}{sep}{hi})"
        if self.kind == "above":
            return f"above {_fmt(self.lo)} (95% confidence)"
        if self.kind == "below":
            return f"below {_fmt(self.hi)} (95% confidence)"
        return "not determined" + (f": {self.note}" if self.note else "")


@dataclass(frozen=True)
class SafeLR:
    """The largest LR whose collapse risk is below 10% with 95% confidence: the one-sided 95% lower
    bound of lr_at_10 (every smaller LR is safer still: the risk rises with the LR).

    kind "inside": `lr` is that bound, inside the tested range [lr_min, lr_max].
    kind "below": not even the smallest lr tried is shown to be that safe (`lr` None).
    kind "above": every lr tried is (`lr` = lr_max): the bound lies above the largest lr tried.
    kind "unknown": no runs.
    `n_runs` and `n_collapsed` are the runs the statement rests on; `note` says what would
    resolve a "below" (for a slice without any collapse: how many runs the exact bound needs).
    """

    lr: float | None
    kind: str
    lr_min: float = math.nan
    lr_max: float = math.nan
    n_runs: int = 0
    n_collapsed: int = 0
    note: str = ""

    def text(self) -> str:
        """One line, e.g. "lr <= 0.14 keeps the collapse risk under 10% (95% confidence, 25 runs)"."""
        runs = _runs(self.n_runs)
        if self.kind == "inside":
            return (
                f"lr <= {_fmt(self.lr)} keeps the collapse risk under 10% (95% confidence, {runs})"
            )
        if self.kind == "above":
            none = "no collapse in " if self.n_collapsed == 0 else ""
            return (
                f"every lr tried, up to the largest, {_fmt(self.lr_max)}, keeps the collapse risk under 10% "
                f"(95% confidence, {none}{runs}): the safe lr lies above the largest lr tried"
            )
        if self.kind == "below":
            text = (
                f"no lr tried is shown to keep the collapse risk under 10%: the safe lr lies below the "
                f"smallest lr tried, {_fmt(self.lr_min)} (95% confidence, {runs})"
            )
            return text + (f"; {self.note}" if self.note else "")
        return "not determined" + (f": {self.note}" if self.note else "")
