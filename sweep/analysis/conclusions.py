"""What a sweep concludes: the per-slice verdicts, the recommendation, the validation set's
resolution and the verdict text, from the tables.

Usage::

    v = compute_verdicts(tables)          # tables from sweep.analysis.tables
    v.slices                              # verdicts.csv: one row per (clip, batch size, extra axes)
    v.recommendation                      # best setting without any collapsed run, or None
    v.reading                             # one paragraph in plain language (sweep.analysis.reading)
    v.noise                               # what the validation set's size lets the report tell apart
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pandas as pd

from sweep.analysis.reading import reading
from sweep.analysis.verdicts import (
    Recommendation, ValidationNoise, clip_fractions, recommend, slice_verdicts, validation_noise,
)


@dataclass
class Verdicts:
    slices: pd.DataFrame  # one row per slice: the slice axes + SLICE_COLUMNS
    recommendation: Optional[Recommendation]
    reading: str  # the plain-language paragraph
    noise: Optional[ValidationNoise] = None


def compute_verdicts(tables: Any) -> Verdicts:
    """Slices, recommendation and reading of a `sweep.analysis.Tables`."""
    axes = list(tables.axes)
    slices = slice_verdicts(tables.summary, axes, tables.chance)
    noise = validation_noise(tables)
    rec = recommend(tables.summary, axes, runs=tables.runs, n_val=noise.n_val)
    text = reading(tables.summary, slices, rec, axes, tables.chance, clip_fractions(tables.curves, axes), noise,
                   runs=tables.runs)
    return Verdicts(slices=slices, recommendation=rec, reading=text, noise=noise)
