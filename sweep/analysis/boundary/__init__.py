"""The stability boundary of a slice: the safe LR and the learning rates at 10% and 50% collapse risk.

Usage::

    from sweep.analysis.boundary import fit_boundary, slice_boundary, boundary_columns

    fit = fit_boundary(lrs, collapsed)        # one lr and one 0/1 per run of a slice
    fit.safe.text()                           # "lr <= 0.14 keeps the collapse risk under 10% (95% confidence, 25 runs)"
    fit.at_10.text()                          # "0.3 (95% CI 0.11-0.69)" or "above 0.3 (95% confidence)"
    fit = slice_boundary(summary_rows)        # from a slice's per-lr summary rows (what the report does)

Modules: `fit` (the model and the entry points: Firth's estimate, the Jeffreys posterior's
intervals and safe LR), `penalized` (the vectorised numerics), `exact` (bounds for degenerate
data), `likelihood` (counts and the never-extrapolate rules), `types` (`RiskLR`, `SafeLR`),
`plan` (per-lr rates and brackets), `design` (where more runs narrow the safe LR: `sweep refine`
and runs_to_resolve), `slices` (what a slice's summary rows count, verdicts.csv columns, sentences).
"""

from sweep.analysis.boundary.design import (
    RESOLVE_FACTOR,
    BoundaryBracket,
    Cohort,
    boundary_bracket,
    next_cohorts,
    resolved,
    runs_to_resolve,
)
from sweep.analysis.boundary.fit import (
    BoundaryFit,
    fit_boundary,
    fit_boundary_batch,
    fit_boundary_counts,
    risk_lr,
)
from sweep.analysis.boundary.plan import (
    Bracket,
    LrRate,
    collapse_bracket,
    rates_by_lr,
    straddling_lrs,
)
from sweep.analysis.boundary.slices import (
    BOUNDARY_COLUMNS,
    SAFE_COLUMNS,
    SliceCounts,
    boundary_columns,
    boundary_sentence,
    bracket_sentence,
    safe_columns,
    slice_boundary,
    slice_counts,
)
from sweep.analysis.boundary.types import (
    CHI2_95,
    KINDS,
    LEVEL,
    SAFE_KINDS,
    STATUSES,
    RiskLR,
    SafeLR,
)

__all__ = [
    "RESOLVE_FACTOR",
    "BoundaryBracket",
    "Cohort",
    "boundary_bracket",
    "next_cohorts",
    "resolved",
    "runs_to_resolve",
    "BoundaryFit",
    "fit_boundary",
    "fit_boundary_batch",
    "fit_boundary_counts",
    "risk_lr",
    "Bracket",
    "LrRate",
    "collapse_bracket",
    "rates_by_lr",
    "straddling_lrs",
    "BOUNDARY_COLUMNS",
    "SAFE_COLUMNS",
    "SliceCounts",
    "boundary_columns",
    "boundary_sentence",
    "bracket_sentence",
    "safe_columns",
    "slice_boundary",
    "slice_counts",
    "CHI2_95",
    "KINDS",
    "LEVEL",
    "SAFE_KINDS",
    "STATUSES",
    "RiskLR",
    "SafeLR",
]
