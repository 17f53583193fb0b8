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
    return float(np.median(finite)) if finite else math.nan


def nanmax(values: Iterable[Any]) -> float:
    """The largest finite value, NaN when there are none."""
    finite = [float(v) for v in values if is_finite(v)]
    return max(finite) if finite else math.nan
