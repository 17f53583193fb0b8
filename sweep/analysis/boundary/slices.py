"""The stability boundary of each slice in the report: the learning rates at 10% and 50% collapse
risk (`sweep.analysis.boundary` fits them), as verdicts.csv columns and sentences.

Usage::

    fit = slice_boundary(rows)     # the summary rows of one slice (one per lr)
    boundary_columns(fit)          # safe_lr, safe_lr_kind, bracket_lo, bracket_hi, lr_at_10, ...
    boundary_sentence(where, fit)  # "At ..., lr <= 0.14 keeps the collapse risk under 10% ..."

Undecided runs (a drop the validation set could not confirm) are left out of the fit: they are
neither collapses nor survivals. A run that never learned is a failure where its lr lies past the
slice's learning range (an lr past the edge saturates the net before it learns anything, so it
cannot collapse, yet it is no safer than one that collapses), a survival at lower lrs (too slow to
learn is not unstable), and left out in between; see `slice_counts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sweep.analysis.boundary.design import RESOLVE_FACTOR, boundary_bracket, runs_to_resolve
from sweep.analysis.boundary.fit import BoundaryFit, RiskLR, fit_boundary_counts
from sweep.core.values import normalize

SAFE_COLUMNS = ["safe_lr", "safe_lr_kind", "bracket_lo", "bracket_hi", "runs_to_resolve"]
BOUNDARY_COLUMNS = [f"lr_at_{q}{part}" for q in (10, 50) for part in ("", "_lo", "_hi", "_kind")]


LEARNING_MAJORITY = 0.5  # most runs learn in the learning range, most never learn past the edge


@dataclass(frozen=True)
class SliceCounts:
    """Per lr of one slice (ascending): the runs the boundary fit counts and those that failed."""

    lrs: list[float]
    decided: list[int]  # runs minus undecided runs and never-learned runs between edge and past
    failed: list[int]  # collapsed, plus never-learned runs past the edge (from past_lr up)
    past: list[int]  # of those, the never-learned runs past the edge
    edge_lr: float | None  # the end of the learning range (None: no lr where most runs learned)
    past_lr: float | None  # never-learned runs from this lr up count as failed (None: none do)

    @property
    def past_edge(self) -> int:
        """Never-learned runs counted as failed, over the slice."""
        return sum(self.past)


def _int(value: Any) -> int:
    return int(normalize(value) or 0)


def slice_counts(rows: Sequence[dict[str, Any]]) -> SliceCounts:
    """What the boundary fit counts per lr, from the slice's summary rows.

    The learning range ends at the largest lr where the share of runs that learned (stable,
    undecided, diverged or constant_output: not never_learned, not non-finite) is at its maximum,
    and that maximum is at least half: with random labels (nothing learns) no run is ever counted
    as past the edge. Past the edge starts at the first lr above it from which on, at every lr up
    to the largest, most runs did not learn (saturation, not seeds that were slow by chance).
    Never-learned runs there count as failed; in the learning range and below they count as
    survivals (too slow to learn did not blow up); between the two they are left out (a few
    scattered by chance must not draw a boundary, nor hide one).
    """
    rows = sorted(rows, key=lambda r: float(r["lr"]))
    lrs = [float(r["lr"]) for r in rows]
    runs = [_int(r["n_runs"]) for r in rows]
    never = [_int(r.get("n_never_learned")) for r in rows]
    learned = [
        (n - nl - _int(r.get("n_nonfinite"))) / n if n else 0.0
        for r, n, nl in zip(rows, runs, never)
    ]
    peak = max(learned, default=0.0)
    edge = (
        max((lr for lr, share in zip(lrs, learned) if share == peak), default=None)
        if peak >= LEARNING_MAJORITY
        else None
    )
    start = next(
        (
            lr
            for i, lr in enumerate(lrs)
            if edge is not None
            and lr > edge
            and all(share <= 1 - LEARNING_MAJORITY for share in learned[i:])
        ),
        None,
    )
    past = [nl if start is not None and lr >= start else 0 for lr, nl in zip(lrs, never)]
    between = [
        nl if edge is not None and lr > edge and not p else 0 for lr, nl, p in zip(lrs, never, past)
    ]
    decided = [n - _int(r.get("n_undecided")) - b for r, n, b in zip(rows, runs, between)]
    failed = [_int(r["n_collapsed"]) + p for r, p in zip(rows, past)]
    return SliceCounts(lrs, decided, failed, past, edge, start)


def slice_boundary(rows: Sequence[dict[str, Any]]) -> BoundaryFit:
    """The dose-response fit of one slice from its per-lr summary rows."""
    c = slice_counts(rows)
    return fit_boundary_counts(c.lrs, c.decided, c.failed)


def _risk_columns(name: str, risk: RiskLR) -> dict[str, Any]:
    return {
        name: risk.estimate,
        f"{name}_lo": risk.lo,
        f"{name}_hi": risk.hi,
        f"{name}_kind": risk.kind,
    }


def safe_columns(fit: BoundaryFit, factor: float = RESOLVE_FACTOR) -> dict[str, Any]:
    """verdicts.csv's safe-LR columns: the safe LR (empty unless inside or above the tested range)
    and its kind (inside, below, above, unknown); the bracket of the first failure on the grid;
    and the runs that would resolve the slice (`sweep.analysis.boundary.design.runs_to_resolve`:
    0 when resolved, empty when no count up to 192 would)."""
    c = fit._counts
    bracket = boundary_bracket(c.lr, c.n, c.k) if fit.n_runs else None
    return {
        "safe_lr": fit.safe.lr,
        "safe_lr_kind": fit.safe.kind,
        "bracket_lo": bracket.lo if bracket else None,
        "bracket_hi": bracket.hi if bracket else None,
        "runs_to_resolve": runs_to_resolve(fit, factor) if fit.n_runs else None,
    }


def boundary_columns(fit: BoundaryFit) -> dict[str, Any]:
    """verdicts.csv's boundary columns: estimates and 95% ends in LR units (empty where the data
    support only a bound, or nothing), and the kind: fit, above, below or unknown."""
    return {**_risk_columns("lr_at_10", fit.at_10), **_risk_columns("lr_at_50", fit.at_50)}


def boundary_sentence(where: str, fit: BoundaryFit, counts: SliceCounts | None = None) -> str:
    """One sentence per slice: the safe LR, then where the collapse risk reaches 10% and 50%."""
    if fit.n_runs == 0:
        return ""
    past = ""
    if counts is not None and counts.past_edge:
        past = (
            f"; {counts.past_edge} run(s) that never learned at lr {counts.past_lr:g} and above, where most runs "
            f"never learn, count as failed"
        )
    return (
        f"At {where}, {fit.safe.text()}; the collapse risk (a logistic fit over log lr, {fit.n_runs} runs{past}) "
        f"reaches 10% at lr {fit.at_10.text()} and 50% at lr {fit.at_50.text()}."
    )


def bracket_sentence(fit: BoundaryFit, factor: float = RESOLVE_FACTOR) -> str:
    """Where the grid only brackets the boundary (no tested lr between the last without a failure
    and the first with one, farther apart than `factor`, and the safe LR not past the bracket),
    say so, with what would resolve it."""
    c = fit._counts
    if not fit.n_runs:
        return ""
    b = boundary_bracket(c.lr, c.n, c.k)
    if not (b.adjacent and b.hi / b.lo > factor and (fit.safe.lr or 0.0) <= b.lo * (1 + 1e-9)):
        return ""
    runs = runs_to_resolve(fit, factor)
    more = (
        f"; about {runs} more runs there would put the safe lr within x{factor:.2f} of lr_at_10"
        if runs
        else ""
    )
    return f"The grid only brackets the boundary: {b.text()}; `sweep refine` adds lrs in between{more}."
