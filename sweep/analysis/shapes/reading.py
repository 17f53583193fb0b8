"""Verdict sentences on the shapes of trouble that are not collapses: loss jumps and fluctuation.

Usage: ``shape_sentences(summary, runs, axes)`` -> sentences for the verdict paragraph
(sweep.analysis.reading). Pure functions of the tables.

- Loss jumps (sweep.analysis.shapes.curves.loss_jump): where runs had a validation-loss jump
  that never recovered, how many of those runs no collapse mode caught, and how big the jumps
  were.
- Fluctuation: how the training loss's epoch-to-epoch jitter (volatility) and the spread of its
  per-step losses within an epoch (step_loss_cv) change with batch size and with lr. A direction
  is stated only where the 95% intervals of the two ends do not overlap; otherwise the sentence
  says the difference is within the seeds' spread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from sweep.core.setting import setting_label, value_label
from sweep.core.values import is_finite, nanmedian, normalize


def shape_sentences(summary: pd.DataFrame, runs: pd.DataFrame, axes: Sequence[str]) -> list[str]:
    """The loss-jump and fluctuation sentences (empty when there is nothing to say)."""
    out = []
    jump = loss_jump_sentence(summary, runs, axes)
    if jump:
        out.append(jump)
    out.extend(volatility_sentences(summary, axes))
    return out


def loss_jump_sentence(summary: pd.DataFrame, runs: pd.DataFrame, axes: Sequence[str]) -> str:
    """Where validation loss jumped and never came back, and how many of those runs did not collapse."""
    if "n_loss_jump" not in summary or not len(runs) or "loss_jump_epoch" not in runs:
        return ""
    rows = summary[summary["n_loss_jump"].fillna(0).astype(int) > 0]
    if not len(rows):
        return ""
    jumped = runs[runs["loss_jump_epoch"].notna()]
    quiet = jumped[~jumped["collapsed"].astype(bool)]
    rows = rows.sort_values("loss_jump_rate", ascending=False, kind="stable")
    named = [
        f"{int(r['n_loss_jump'])}/{int(r['n_runs'])} runs at "
        f"{setting_label({a: normalize(r[a]) for a in axes}, axes)} (95% CI "
        f"{float(r['loss_jump_rate_lo']):.0%}-{float(r['loss_jump_rate_hi']):.0%})"
        for r in rows.head(3).to_dict("records")
    ]
    more = f" and {len(rows) - 3} more settings" if len(rows) > 3 else ""
    ratio = nanmedian([float(v) for v in jumped["loss_jump_ratio"]])
    epoch = nanmedian([float(v) for v in jumped["loss_jump_epoch"]])
    uncaught = (
        f"; {len(quiet)} of them did not collapse, so only this count shows them"
        if len(quiet)
        else "; every one of them also collapsed"
    )
    return (
        f"The validation loss jumped and never came back (a loss jump: a sudden rise far above the run's own "
        f"epoch-to-epoch noise that lasts to the end) in "
        f"{'; '.join(named)}{more}. The loss rose to a median {ratio:.2f}x its lowest value, around epoch "
        f"{epoch:.0f}{uncaught}."
    )


# The two fluctuation statistics, as the verdict names them.
MEASURES = (
    (
        "volatility",
        "Training-loss volatility (the epoch-to-epoch jitter of the log loss after warm-up)",
    ),
    (
        "step_loss_cv",
        "The spread of the per-step training losses within an epoch (step_loss_cv, as a share of "
        "the epoch's mean)",
    ),
)


def volatility_sentences(summary: pd.DataFrame, axes: Sequence[str]) -> list[str]:
    """How each fluctuation statistic changes with batch size, and with lr, where the grid varies them."""
    out: list[str] = []
    for column, name in MEASURES:
        if column not in summary or not len(summary):
            continue
        said = False
        for axis, noun in (("batch_size", "batch size"), ("lr", "lr")):
            if axis in axes and summary[axis].map(normalize).nunique() >= 2:
                text = _trend_sentence(summary, axes, axis, noun, column, "It" if said else name)
                if text:
                    out.append(text)
                    said = True
    return out


def _trend_sentence(
    summary: pd.DataFrame, axes: Sequence[str], axis: str, noun: str, column: str, name: str
) -> str:
    """One sentence: across the slices along `axis`, does `column` rise or fall from the smallest
    to the largest value, beyond the seeds' spread (disjoint 95% intervals)?"""
    others = [a for a in axes if a != axis]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in summary.to_dict("records"):
        groups.setdefault(tuple(normalize(r[a]) for a in others), []).append(r)
    calls: dict[str, list[tuple[tuple[Any, ...], list[dict[str, Any]]]]] = {
        "falls": [],
        "rises": [],
        "same": [],
    }
    for key, rows in groups.items():
        rows = [
            r
            for r in sorted(rows, key=lambda r: float(r[axis]))
            if is_finite(normalize(r.get(column)))
        ]
        if len(rows) < 2:
            continue
        calls[_direction(rows[0], rows[-1], column)].append((key, rows))
    decided = len(calls["falls"]) + len(calls["rises"])
    n = decided + len(calls["same"])
    if not n:
        return ""
    slices = "the one slice that varies it" if n == 1 else f"any of the {n} slices that vary it"
    if not decided:
        key, rows = calls["same"][0]
        return (
            f"{name} does not change with {noun} beyond the seeds' spread in {slices} "
            f"({_example(key, rows, others, axis, column)})."
        )
    main = "falls" if len(calls["falls"]) >= len(calls["rises"]) else "rises"
    key, rows = max(calls[main], key=lambda kr: abs(math.log(_ratio(kr[1], column))))
    text = (
        f"{name} {main} as {noun} grows in {len(calls[main])} of {n} slice{'s' if n != 1 else ''} "
        f"(95% intervals apart at the two ends): {_example(key, rows, others, axis, column)}"
    )
    other = "rises" if main == "falls" else "falls"
    if calls[other]:
        text += f"; it {other} in {len(calls[other])}"
    if calls["same"]:
        text += f"; in {len(calls['same'])} the difference is within the seeds' spread"
    return text + "."


def _direction(first: dict[str, Any], last: dict[str, Any], column: str = "volatility") -> str:
    """'falls' or 'rises' from `first` to `last` when their intervals are disjoint, else 'same'."""
    lo1, hi1 = _bound(first, f"{column}_lo"), _bound(first, f"{column}_hi")
    lo2, hi2 = _bound(last, f"{column}_lo"), _bound(last, f"{column}_hi")
    if lo1 is None or hi1 is None or lo2 is None or hi2 is None:
        return "same"
    if hi2 < lo1:
        return "falls"
    if hi1 < lo2:
        return "rises"
    return "same"


def _example(
    key: tuple[Any, ...], rows: list[dict[str, Any]], others: Sequence[str], axis: str, column: str
) -> str:
    where = setting_label(dict(zip(others, key)), list(others))
    at = "lr=" if axis == "lr" else "batch size " if axis == "batch_size" else f"{axis}="
    values = ", ".join(
        f"{float(r[column]):.3g} at {at}{value_label(normalize(r[axis]))}" for r in rows
    )
    return f"at {where}: {values}"


def _ratio(rows: list[dict[str, Any]], column: str) -> float:
    a, b = float(rows[0][column]), float(rows[-1][column])
    return b / a if a > 0 and b > 0 else 1.0


def _bound(row: dict[str, Any], column: str) -> float | None:
    v = normalize(row.get(column))
    return float(v) if isinstance(v, (int, float)) and not math.isnan(v) else None
