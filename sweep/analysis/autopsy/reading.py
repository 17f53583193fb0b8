"""The verdict's line per slice on why its runs collapsed, and the advice that follows.

Usage::

    lines = mechanism_lines(runs, summary, axes)     # one Line per slice with a collapsed run

For example: "At lr=1, batch size 32 without clipping: 4 of 4 collapses began with a gradient
cliff (grad_norm_max x40 in the epoch before the collapse; clipping at 0.6, this slice's p90,
would have cut it); 3 ended in saturated units with constant output. Clip at 0.6."
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sweep.analysis.autopsy.chain import CAUSES
from sweep.analysis.reading import Line
from sweep.core.setting import Setting, slice_label, value_label
from sweep.core.values import normalize

FIGURE = "autopsy"  # the figure kind the line reads (sweep.report.autopsy_figure)
BEGAN = {
    "gradient_cliff": "a gradient cliff",
    "step_too_large": "a step too large for the weights",
    "saturation": "saturated units",
    "output_collapse": "an output collapse to one class",
    "nonfinite": "a NaN/inf",
    "undetermined": "nothing the signals could name",
}


def mechanism_lines(
    runs: pd.DataFrame | None, summary: pd.DataFrame, axes: Sequence[str]
) -> list[Line]:
    """One line per slice (every axis but lr) whose runs collapsed: how many began with each
    mechanism, its evidence, how they ended, and the advice that follows from the mechanism."""
    if runs is None or not len(runs) or "collapse_cause" not in runs:
        return []
    keys = [a for a in axes if a != "lr"]
    done = runs[runs["collapse_cause"].fillna("").astype(str) != ""]
    lines = []
    for key, group in _by_slice(done, keys):
        rows = _slice_summary(summary, keys, key)
        text = slice_sentence(group.to_dict("records"), rows, dict(zip(keys, key)))
        if text:
            lines.append(Line(text, FIGURE, "mechanism"))
    return lines


def _by_slice(runs: pd.DataFrame, keys: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(runs[keys].to_dict("records") if keys else [{}] * len(runs)):
        groups.setdefault(Setting.of(r, keys).values(keys), []).append(i)
    return [(k, runs.iloc[idx]) for k, idx in groups.items()]


def _slice_summary(summary: pd.DataFrame, keys: list[str], key: tuple) -> list[dict[str, Any]]:
    rows = summary.to_dict("records") if len(summary) else []
    return [r for r in rows if Setting.of(r, keys).values(keys) == key]


def slice_sentence(
    runs: Sequence[dict[str, Any]], settings: Sequence[dict[str, Any]], where: dict[str, Any]
) -> str:
    """The line of one slice from its collapsed runs' rows and its settings' summary rows."""
    if not runs:
        return ""
    causes = Counter(str(r["collapse_cause"]) for r in runs)
    top = min(causes, key=lambda c: (-causes[c], CAUSES.index(c) if c in CAUSES else 99))
    mine = [r for r in runs if r["collapse_cause"] == top]
    lrs = sorted({float(r["lr"]) for r in runs})
    at = (
        f"lr={value_label(lrs[0])}"
        if len(lrs) == 1
        else f"lr {value_label(lrs[0])} to {value_label(lrs[-1])}"
    )
    place = slice_label(where)
    began = BEGAN.get(top, top)
    text = f"At {at}{', ' + place if place else ''}: {len(mine)} of {len(runs)} collapses began with {began}"
    clip = normalize(where.get("clip"))
    p90 = _p90(settings)
    text += _detail(top, mine, clip, p90)
    others = [f"{BEGAN.get(c, c)} ({n})" for c, n in causes.items() if c != top]
    if others:
        text += f"; the others with {', '.join(others)}"
    ending, n_end = _ending(runs)
    if ending:
        text += f"; {n_end} ended in {ending}"
    return f"{text}. {_advice(top, mine, clip, p90)}".strip()


def _p90(settings: Sequence[dict[str, Any]]) -> float:
    """The slice's p90 gradient norm: that of its largest lr without a collapse, else the median
    over its settings (grad_norm_p90: a run's median epoch p90, a setting's median run)."""

    def value(r):
        v = normalize(r.get("grad_norm_p90"))
        return float(v) if v is not None and math.isfinite(float(v)) else math.nan

    quiet = [r for r in settings if not normalize(r.get("n_collapsed")) and math.isfinite(value(r))]
    if quiet:
        return value(max(quiet, key=lambda r: float(r["lr"])))
    values = [value(r) for r in settings if math.isfinite(value(r))]
    return float(np.median(values)) if values else math.nan


def _when(rows: Sequence[dict[str, Any]]) -> str:
    gaps = [
        int(r["collapse_epoch"]) - int(r["cause_epoch"])
        for r in rows
        if _number(r.get("collapse_epoch")) is not None
        and _number(r.get("cause_epoch")) is not None
    ]
    if not gaps:
        return ""
    gap = int(np.median(gaps))
    if gap == 0:
        return " in the epoch of the collapse"
    if gap == 1:
        return " in the epoch before the collapse"
    if gap > 1:
        return f" {gap} epochs before the collapse"
    return f" {-gap} epoch{'s' if gap < -1 else ''} after the collapse began"


def _size(rows: Sequence[dict[str, Any]]) -> float:
    sizes = [float(r["cause_size"]) for r in rows if _number(r.get("cause_size")) is not None]
    return float(np.median(sizes)) if sizes else math.nan


def _factor(x: float) -> str:
    return f"x{x:.1f}" if x < 10 else f"x{x:.0f}"


def _detail(cause: str, rows: Sequence[dict[str, Any]], clip: Any, p90: float) -> str:
    size, when = _size(rows), _when(rows)
    if cause == "gradient_cliff":
        norm = (
            f"grad_norm_max {_factor(size)}{when}"
            if math.isfinite(size)
            else f"the norm jumped{when}"
        )
        if clip is None and math.isfinite(p90):
            return f" ({norm}; clipping at {p90:.2g}, this slice's p90, would have cut it)"
        if clip is not None:
            return f" ({norm}, before clipping at {value_label(clip)})"
        return f" ({norm})"
    if cause == "step_too_large":
        what = [str(r.get("cause_evidence") or "") for r in rows]
        lr_side = sum("crit_lr" in w for w in what) > len(what) / 2
        return (
            f" (the lr past the critical step{when})"
            if lr_side
            else f" (update/weight ratio {_factor(size)}{when})"
            if math.isfinite(size)
            else f"{when}"
        )
    if cause == "saturation":
        share = f"sat_frac {size:.2f}" if math.isfinite(size) else "saturated units"
        fell = sum("gradients fell" in str(r.get("cause_evidence") or "") for r in rows)
        return (
            f" ({share}{when}{', the gradients falling with it' if 2 * fell > len(rows) else ''})"
        )
    if cause == "output_collapse":
        share = f"{size:.0%} of predictions in one class" if math.isfinite(size) else "one class"
        return f" ({share}{when}, the logits growing)"
    if cause == "nonfinite":
        origins = Counter(str(r.get("nonfinite_origin") or "") for r in rows)
        origin, n = origins.most_common(1)[0]
        return (
            f" (first in {origin}{'' if n == len(rows) else f' in {n} of them'})" if origin else ""
        )
    missing = Counter(str(r.get("missing_signals") or "") for r in rows).most_common(1)[0][0]
    return (
        f" (no signal cleared its noise; not recorded: {missing.replace(',', ', ')})"
        if missing
        else " (no signal cleared its noise)"
    )


def _ending(runs: Sequence[dict[str, Any]]) -> tuple[str, int]:
    """The most common way the chains with more than one step ended."""
    ends = Counter()
    for r in runs:
        chain = [c for c in str(r.get("collapse_chain") or "").split(">") if c]
        if len(chain) < 2:
            continue
        if chain[-1] == "output_collapse":
            ends[
                "saturated units with constant output"
                if "saturation" in chain
                else "constant output"
            ] += 1
        elif chain[-1] == "nonfinite":
            ends["a NaN/inf"] += 1
        elif chain[-1] == "saturation":
            ends["saturated units"] += 1
    if not ends:
        return "", 0
    ending, n = ends.most_common(1)[0]
    return ending, n


def _advice(cause: str, rows: Sequence[dict[str, Any]], clip: Any, p90: float) -> str:
    if cause == "gradient_cliff":
        if clip is None and math.isfinite(p90):
            return f"Clip at {p90:.2g}."
        return "Clip lower, or lower the lr." if clip is not None else "Clip the gradient norm."
    if cause == "step_too_large":
        epochs = [int(r["cause_epoch"]) for r in rows if _number(r.get("cause_epoch")) is not None]
        start = f" from epoch {int(np.median(epochs))} on" if epochs else ""
        return f"Lower the lr, or decay it{start}."
    if cause == "saturation":
        return "Lower the lr, or rescale the inputs."
    if cause == "output_collapse":
        return "Check the class balance, and lower the lr."
    if cause == "nonfinite":
        origins = Counter(str(r.get("nonfinite_origin") or "") for r in rows)
        origin = origins.most_common(1)[0][0]
        return f"Look at {origin}, where the NaN/inf appeared first." if origin else ""
    return ""


def _number(v: Any) -> float | None:
    v = normalize(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
