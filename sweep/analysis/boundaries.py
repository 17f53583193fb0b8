"""The stability boundary of each slice in the report: the learning rates at 10% and 50% collapse
risk (`sweep.analysis.boundary` fits them), as verdicts.csv columns and sentences.

Usage::

    fit = slice_boundary(rows)          # the summary rows of one slice (one per lr)
    boundary_columns(fit)               # lr_at_10, lr_at_10_lo, lr_at_10_hi, lr_at_10_kind, lr_at_50, ...
    boundary_sentence(where, fit)       # "the collapse risk reaches 10% at lr 0.2 (95% CI ...) ..."

Undecided runs (a drop the validation set could not confirm) are left out of the fit: they are
neither collapses nor survivals.
"""

from __future__ import annotations

from typing import Any, Sequence

from sweep.analysis.boundary import BoundaryFit, RiskLR, fit_boundary_counts
from sweep.core.values import normalize

BOUNDARY_COLUMNS = [
    f"lr_at_{q}{part}" for q in (10, 50) for part in ("", "_lo", "_hi", "_kind")
]


def slice_boundary(rows: Sequence[dict[str, Any]]) -> BoundaryFit:
    """The dose-response fit of one slice from its per-lr summary rows."""
    lrs = [float(r["lr"]) for r in rows]
    decided = [int(r["n_runs"]) - int(normalize(r.get("n_undecided")) or 0) for r in rows]
    collapsed = [int(r["n_collapsed"]) for r in rows]
    return fit_boundary_counts(lrs, decided, collapsed)


def _risk_columns(name: str, risk: RiskLR) -> dict[str, Any]:
    return {name: risk.estimate, f"{name}_lo": risk.lo, f"{name}_hi": risk.hi, f"{name}_kind": risk.kind}


def boundary_columns(fit: BoundaryFit) -> dict[str, Any]:
    """verdicts.csv's boundary columns: estimates and 95% ends in LR units (empty where the data
    support only a bound, or nothing), and the kind: fit, above, below or unknown."""
    return {**_risk_columns("lr_at_10", fit.at_10), **_risk_columns("lr_at_50", fit.at_50)}


def boundary_sentence(where: str, fit: BoundaryFit) -> str:
    """One sentence per slice: where the collapse risk reaches 10% and 50%, or the bounds."""
    if fit.n_runs == 0:
        return ""
    return (f"At {where}, the collapse risk (a logistic fit over log lr, {fit.n_runs} runs) reaches 10% at lr "
            f"{fit.at_10.text()} and 50% at lr {fit.at_50.text()}.")
