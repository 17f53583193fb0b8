"""Numbers as the tables' CSV files print them: what the data resolve, not float32 artefacts.

Usage::

    csv_ready(tables.runs, axes, n_val, runs=1)           # runs.csv: accuracies as k / n_val
    csv_ready(tables.summary, axes, n_val, runs="n_runs")  # summary.csv: means of runs' k / n_val
    csv_ready(verdicts.slices, slice_axes, n_val)          # verdicts.csv

An accuracy measured on n_val validation sequences is a count k out of n_val: 387/450 is 0.86, not
0.8600000023841858 (the float32 the training loop stored). A mean over m runs is a multiple of
1/(n_val * m). Both are snapped to that lattice and written with the fewest decimals that still
tell neighbouring lattice points apart (ceil(log10(2 * n_val * m)) decimals: 0.9838 for 364/370,
so multiplying back by 370 recovers 364); a value off the lattice (per-step accuracies are no
count of sequences) keeps 6 significant digits. Interval ends of a mean get the mean's decimals.
Every other float (losses, gradient norms, estimated learning rates, rates' Wilson ends) is
rounded to 4 significant digits; the grid's own values (the axes, and lrs that are grid points)
and integers pass unchanged. Without n_val (a user's trainer that does not say), accuracies keep
6 significant digits. Pure: the frame is copied, the tables in memory keep full precision, and
curves.parquet is written at full precision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

SIGNIFICANT = 4  # digits of every other float
ACCURACY_SIGNIFICANT = 6  # digits of an accuracy when n_val is unknown
# lr-valued columns that hold grid points (tested lrs), not estimates: exact as configured.
GRID_VALUED = {
    "lr_min",
    "lr_max",
    "largest_stable_lr",
    "first_collapse_lr",
    "best_lr",
    "bracket_lo",
    "bracket_hi",
}
_MEANS = {"mean_best_acc", "mean_final_acc", "best_mean_best_acc"}


def is_accuracy(column: str) -> bool:
    """Columns that hold a validation accuracy (a share of n_val sequences)."""
    return column.endswith("_acc") or "_acc_" in column or column in ("noise_floor", "chance")


def decimals_for(lattice: float) -> int:
    """Decimals that keep multiples of 1/lattice apart: 10^-d < 1 / (2 * lattice)."""
    return max(1, math.ceil(math.log10(2.0 * lattice)))


def snap(value: float, lattice: float) -> float:
    """The nearest multiple of 1/lattice, written with `decimals_for(lattice)` decimals, when
    `value` is one up to float32 rounding (a thousandth of a count); otherwise (a per-step
    accuracy, which is no count of sequences) `value` to 6 significant digits."""
    if not math.isfinite(value):
        return value
    count = value * lattice
    if abs(count - round(count)) > 1e-3:
        return significant(value, ACCURACY_SIGNIFICANT)
    return round(round(count) / lattice, decimals_for(lattice))


def significant(value: float, digits: int = SIGNIFICANT) -> float:
    """`value` rounded to `digits` significant digits (0, NaN and infinities unchanged)."""
    if not math.isfinite(value) or value == 0:
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def csv_ready(
    frame: pd.DataFrame, axes: Sequence[str], n_val: int | None, runs: Any = 1
) -> pd.DataFrame:
    """A copy of `frame` with every float column rounded to what the data resolve (module doc).

    Args:
        frame: runs, summary or verdicts table.
        axes: its grid axes (passed unchanged).
        n_val: validation sequences per accuracy (None: unknown).
        runs: runs per row behind a mean accuracy: an int, or the name of a column holding it.
    """
    out = frame.copy()
    per_row = (
        out[runs]
        if isinstance(runs, str) and runs in out
        else pd.Series(runs if not isinstance(runs, str) else 1, index=out.index)
    )
    for column in out.columns:
        values = out[column]
        if column in axes or column in GRID_VALUED or not pd.api.types.is_float_dtype(values):
            continue
        if is_accuracy(column):
            out[column] = _accuracies(column, values, n_val, per_row)
        else:
            out[column] = [significant(float(v)) for v in values]
    return out


def _accuracies(
    column: str, values: pd.Series, n_val: int | None, per_row: pd.Series
) -> list[float]:
    if not n_val:
        return [significant(float(v), ACCURACY_SIGNIFICANT) for v in values]
    mean = column.split("_lo")[0].split("_hi")[0] in _MEANS or column.startswith("mean_")
    out = []
    for v, m in zip(values, per_row):
        m = int(m) if mean and _finite(m) and int(m) > 0 else 1
        lattice = float(n_val) * m
        exact = column in _MEANS or not (column.endswith("_lo") or column.endswith("_hi"))
        out.append(
            snap(float(v), lattice)
            if exact
            else round(float(v), decimals_for(lattice))
            if _finite(v)
            else v
        )
    return out


def _finite(v: Any) -> bool:
    try:
        return bool(np.isfinite(float(v)))
    except (TypeError, ValueError):
        return False
