"""The cells of report.html's tables: how each column's value is written, aligned and sorted.

Usage: ``make_table(table_id, [(column, title), ...], [(row_dict, css_class), ...])`` -> a `Table`
that templates/report.html.j2 renders; `fmt` and `ci_text` write one number or interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sweep.core.setting import value_label
from sweep.core.values import normalize


@dataclass(frozen=True)
class Cell:
    text: str
    cls: str = ""
    sort: str | None = None  # data-v: the value a click sorts by


@dataclass(frozen=True)
class Row:
    cells: list[Cell]
    cls: str = ""


@dataclass(frozen=True)
class Table:
    id: str
    head: list[Cell]
    rows: list[Row]


def make_table(
    table_id: str, head: Sequence[tuple[str, str]], rows: Sequence[tuple[dict[str, Any], str]]
) -> Table:
    def cell(k: str, value: Any) -> Cell:
        # "no clipping" sorts before every clip value (clip values are > 0)
        sort = "-1" if k == "clip" and normalize(value) is None else _sort_value(value)
        return Cell(_cell(k, value), _align(k), sort)

    return Table(
        id=table_id,
        head=[Cell(title, _align(k)) for k, title in head],
        rows=[Row([cell(k, row.get(k)) for k, _ in head], cls) for row, cls in rows],
    )


def _align(key: str) -> str:
    return (
        "text"
        if key
        in (
            "collapse_mode",
            "nonfinite",
            "collapsed_lrs",
            "collapse_witness",
            "reason",
            "log",
            "safe_lr_text",
            "lr_at_10_text",
            "lr_at_50_text",
            "bracket",
        )
        else ""
    )


def _cell(key: str, value: Any) -> str:
    value = normalize(value)
    if value is None:
        return "none" if key == "clip" else ""
    if (
        key in ("lr", "clip", "batch_size", "largest_stable_lr", "first_collapse_lr", "best_lr")
        or key not in _NUMERIC
    ):
        return value_label(value) if not isinstance(value, str) else value
    return fmt(value)


_NUMERIC = {
    "mean_best_acc",
    "collapse_rate",
    "mean_final_acc",
    "mean_spikes",
    "noise_floor",
    "grad_norm_p90",
    "grad_norm_max",
    "clip_fraction",
    "best_acc",
    "final_acc",
    "lr_sensitivity",
    "best_mean_best_acc",
    "volatility",
    "step_loss_cv",
    "loss_jump_ratio",
}


def fmt(value: Any) -> str:
    value = normalize(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.3g}"
    return str(value)


def _sort_value(value: Any) -> str | None:
    value = normalize(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None if value is not None else ""
    return repr(float(value))


def ci_text(lo: Any, hi: Any) -> str:
    lo, hi = normalize(lo), normalize(hi)
    if lo is None or hi is None:
        return ""
    return f"{lo:.3f}-{hi:.3f}" if math.isfinite(hi) else f"{lo:.3f} and up"
