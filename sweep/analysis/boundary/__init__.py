"""The stability boundary of a slice: the learning rates at 10% and 50% collapse risk.

Usage::

    from sweep.analysis.boundary import fit_boundary, slice_boundary, boundary_columns

    fit = fit_boundary(lrs, collapsed)        # one lr and one 0/1 per run of a slice
    fit.at_10.text()                          # "0.12 (95% CI 0.08-0.2)" or "above 0.3 (95% confidence)"
    fit = slice_boundary(summary_rows)        # from a slice's per-lr summary rows (what the report does)

Modules: `fit` (the model, exact bounds for degenerate data, the entry points), `likelihood`
(counts, maximum likelihood, profile-likelihood intervals and bands), `types` (`RiskLR`, the
result at one risk level), `plan` (per-lr rates and brackets for `sweep refine`), `slices` (what a
slice's summary rows count, verdicts.csv columns and sentences).
"""

from sweep.analysis.boundary.fit import BoundaryFit, fit_boundary, fit_boundary_counts, risk_lr
from sweep.analysis.boundary.plan import Bracket, LrRate, collapse_bracket, rates_by_lr, straddling_lrs
from sweep.analysis.boundary.slices import (
    BOUNDARY_COLUMNS, SliceCounts, boundary_columns, boundary_sentence, slice_boundary, slice_counts,
)
from sweep.analysis.boundary.types import CHI2_95, KINDS, LEVEL, STATUSES, RiskLR

__all__ = [
    "BoundaryFit", "fit_boundary", "fit_boundary_counts", "risk_lr", "Bracket", "LrRate", "collapse_bracket",
    "rates_by_lr", "straddling_lrs", "BOUNDARY_COLUMNS", "SliceCounts", "boundary_columns", "boundary_sentence",
    "slice_boundary", "slice_counts", "CHI2_95", "KINDS", "LEVEL", "STATUSES", "RiskLR",
]
