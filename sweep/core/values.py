"""Small value helpers shared by every layer: one spelling of "absent" and NaN-safe statistics."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np


def normalize(value: Any) -> Any:
    """One spelling per value: None for "absent" (None, NaN, pd.NA), plain Python scalars."""
    if value is None or type(value).__name__ == "NAType":
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def is_finite(value: Any) -> bool:
    """A real number that is neither NaN nor infinite (None, strings and bools are not)."""
    return (
        isinstance(value, (int, float, np.number))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def nanmedian(values: Iterable[Any]) -> float:
    """The median of the finite values, NaN when there are none."""
    finite = [float(v) for v in values if is_finite(v)]
    return median(np.asarray(finite)) if finite else math.nan


def median(values: np.ndarray) -> float:
    """The median of a non-empty 1-D float array without NaN: np.median's value (the mean of
    the two middle values for an even size), without its overhead, which dominates on the few
    dozen epochs of a curve (detection runs for every run of a report, and hundreds of thousands
    of times in the noise simulations)."""
    ordered = np.sort(values)
    m = ordered.size
    return 0.5 * float(ordered[(m - 1) // 2] + ordered[m // 2])


def nanmax(values: Iterable[Any]) -> float:
    """The largest finite value, NaN when there are none."""
    finite = [float(v) for v in values if is_finite(v)]
    return max(finite) if finite else math.nan
