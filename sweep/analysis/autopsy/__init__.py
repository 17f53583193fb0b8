"""Why a run collapsed: the chain of mechanisms in its curves (issue 26; docs/why-it-collapsed.md).

Pure functions over one run's per-epoch curves and its collapse call (`detect_run`'s
collapse_epoch and collapse_mode), so a report names the mechanisms without retraining.

Usage::

    from sweep.analysis.autopsy import autopsy, autopsy_columns, cause_counts

    a = autopsy(curves, collapse_epoch, collapse_mode, nonfinite_origin)   # chain, cause, ...
    row.update(autopsy_columns(curves, verdict, nonfinite_origin))         # runs.csv columns
    summary.update(cause_counts(rows))                                     # n_cause_<cause>

Modules: `onsets` (where each mechanism's rule holds, each signal against its own noise),
`chain` (a collapsed run's chain, cause and columns), `reading` (the verdict's line per slice).
"""

from sweep.analysis.autopsy.chain import (
    AUTOPSY_COLUMNS,
    CAUSE_COLUMNS,
    CAUSES,
    Autopsy,
    autopsy,
    autopsy_columns,
    cause_counts,
    empty_columns,
)
from sweep.analysis.autopsy.onsets import MECHANISMS, Onset, missing_signals, onsets
from sweep.analysis.autopsy.reading import mechanism_lines

__all__ = [
    "AUTOPSY_COLUMNS",
    "CAUSE_COLUMNS",
    "CAUSES",
    "MECHANISMS",
    "Autopsy",
    "Onset",
    "autopsy",
    "autopsy_columns",
    "cause_counts",
    "empty_columns",
    "mechanism_lines",
    "missing_signals",
    "onsets",
]
