"""Stability verdicts: pure functions over the per-setting summary table (docs/architecture.md,
"Definitions").

Usage::

    slice_verdicts(summary, axes, chance)   # verdicts.csv: one row per (clip, batch size, extra axes)
    recommend(summary, axes, runs, n_val)   # sweep.analysis.recommendation (re-exported here)
    validation_noise(tables)                # what the validation set's size lets the report tell apart

`sweep.analysis.conclusions.compute_verdicts` puts them together with the reading.

A *slice* is every setting that shares all axes but the learning rate: one line of an LR curve.
Per slice: LR sensitivity (adapted from Wortsman et al. 2023) and the largest stable LR. Over the
whole grid: the recommended setting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sweep.analysis.boundary import (
    BOUNDARY_COLUMNS,
    SAFE_COLUMNS,
    boundary_columns,
    safe_columns,
    slice_boundary,
)
from sweep.analysis.recommendation import Recommendation, recommend  # noqa: F401  (re-exported)
from sweep.config.detect import DetectConfig
from sweep.core.setting import Setting, value_label
from sweep.core.values import nanmedian, normalize

# Tuning Playbook (Google, 2023): clipping more than about half of the updates is too aggressive.
CLIP_FRACTION_TOO_HIGH = 0.5

SLICE_COLUMNS = [
    *SAFE_COLUMNS,
    "n_lrs",
    "lr_min",
    "lr_max",
    "lr_sensitivity",
    "largest_stable_lr",
    "first_collapse_lr",
    "collapsed_lrs",
    "monotone_collapse",
    "best_lr",
    "best_mean_best_acc",
    "best_mean_best_loss",
    "n_runs",
    "n_collapsed",
    "grad_norm_p90",
    *BOUNDARY_COLUMNS,
]


@dataclass(frozen=True)
class ValidationNoise:
    """What the validation set's size lets the report tell apart (sweep.noise)."""

    n_val: int | None  # validation sequences (None: unknown, noise not accounted for)
    resolution: (
        float  # smallest accuracy difference told apart from noise (95%, worst case p = 0.5)
    )
    floor: float  # the best of `epochs` epochs with nothing learned stays below this (learned test)
    chance: float
    epochs: int
    n_undecided: int  # runs whose drop neither accuracy nor loss confirmed
    n_hidden: int  # runs above chance + min_gain whose best the noise floor swallowed
    n_runs: int
    too_coarse: bool  # the validation set is too small for the question asked of it
    fix: str  # the concrete fix, in words, when too coarse

    def sentence(self) -> str:
        """The study's resolution in one sentence (the noise floor only where it is known)."""
        if not self.n_val:
            return ""
        text = (
            f"With {self.n_val} validation sequences, accuracy differences smaller than about "
            f"{self.resolution:.2f} are within sampling noise"
        )
        if not math.isfinite(self.floor):
            return text + "."
        return text + (
            f", and with nothing learned the best of {self.epochs} epochs still reaches up to "
            f"{min(self.floor, 1.0):.3f} (chance {self.chance:.3f}); a run counts as learned only "
            f"above that."
        )


# --------------------------------------------------------------------------- values and keys


def setting_key(row: Any, axes: Sequence[str]) -> tuple[Any, ...]:
    """The values of a summary/runs/curves row over `axes`: its Setting's row key."""
    return Setting.of(row, axes).values(axes)


def slice_axes(axes: Sequence[str]) -> list[str]:
    """The axes that define a slice: every axis but the learning rate."""
    return [a for a in axes if a != "lr"]


# --------------------------------------------------------------------------- per-slice numbers


def lr_sensitivity(accs: Sequence[float], chance: float) -> float:
    """Mean over the LR grid of `best_over_lr - max(acc(lr), chance)` (0 when every LR is as good).

    The best is floored at chance too, so a slice where nothing learned scores 0, not a
    negative number; whenever some LR beats chance this is exactly the formula of
    docs/architecture.md ("Definitions").
    """
    vals = [float(a) for a in accs if a is not None and math.isfinite(float(a))]
    if not vals:
        return math.nan
    floored = [max(a, chance) for a in vals]
    best = max(floored)
    return float(np.mean([best - a for a in floored]))


def loss_sensitivity(losses: Sequence[float], reference: float | None) -> float:
    """Wortsman et al.'s LR sensitivity on the loss: mean over the LR grid of
    `min(loss(lr), reference) - min over the grid of the loss`, where the reference (the loss of
    knowing nothing) scores a diverged lr as "no better than untrained"; without a reference,
    the worst finite loss of the grid caps it."""
    vals = [float(v) for v in losses if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan
    cap = float(reference) if reference is not None and math.isfinite(reference) else max(vals)
    best = min(min(vals), cap)
    return float(np.mean([min(v, cap) - best for v in vals]))


def largest_stable_lr(lrs: Sequence[float], n_collapsed: Sequence[int]) -> float | None:
    """The largest LR such that it and every smaller LR had no collapsed run; None if the smallest did."""
    stable = None
    for lr, k in sorted(zip(lrs, n_collapsed), key=lambda p: p[0]):
        if k > 0:
            break
        stable = float(lr)
    return stable


def slice_verdicts(
    summary: pd.DataFrame,
    axes: Sequence[str],
    chance: float,
    score: Any = None,
    reference: float | None = None,
) -> pd.DataFrame:
    """One row per slice (in grid order): LR sensitivity, largest stable LR and what collapsed where.

    `score` (`sweep.analysis.metric.Score`): a loss study scores settings by their mean best loss
    (the best lr has the lowest) and its LR sensitivity is `loss_sensitivity` against
    `reference`, the loss of knowing nothing."""
    is_loss = score is not None and score.lower_is_better
    keys = slice_axes(axes)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in summary.to_dict("records"):
        groups.setdefault(setting_key(row, keys), []).append(row)
    out = []
    for key, rows in groups.items():
        rows = sorted(rows, key=lambda r: float(r["lr"]))
        lrs = [float(r["lr"]) for r in rows]
        ks = [int(r["n_collapsed"]) for r in rows]
        accs = [float(r["mean_best_acc"]) for r in rows]
        losses = [float(r.get("mean_best_loss", math.nan)) for r in rows]
        collapsed = [lr for lr, k in zip(lrs, ks) if k > 0]
        first = collapsed[0] if collapsed else None
        # Monotone: once a run collapses at some LR, every larger LR has a collapse too.
        monotone = not collapsed or all(k > 0 for lr, k in zip(lrs, ks) if lr >= first)
        scores = [-v for v in losses] if is_loss else accs
        finite = [(a, lr) for a, lr in zip(scores, lrs) if math.isfinite(a)]
        best_score, best_lr = (
            max(finite, key=lambda p: (p[0], -p[1])) if finite else (math.nan, math.nan)
        )
        best_acc = math.nan if is_loss else best_score
        stable_p90 = [float(r["grad_norm_p90"]) for r, k in zip(rows, ks) if k == 0]
        p90 = nanmedian(stable_p90 or [float(r["grad_norm_p90"]) for r in rows])
        fit = slice_boundary(rows)
        out.append(
            {
                **dict(zip(keys, key)),
                **safe_columns(fit),
                "n_lrs": len(rows),
                "lr_min": lrs[0],
                "lr_max": lrs[-1],
                "lr_sensitivity": loss_sensitivity(losses, reference)
                if is_loss
                else lr_sensitivity(accs, chance),
                "largest_stable_lr": largest_stable_lr(lrs, ks),
                "first_collapse_lr": first,
                "collapsed_lrs": " ".join(value_label(lr) for lr in collapsed),
                "monotone_collapse": monotone,
                "best_lr": best_lr,
                "best_mean_best_acc": best_acc,
                "best_mean_best_loss": -best_score if is_loss else math.nan,
                "n_runs": int(sum(int(r["n_runs"]) for r in rows)),
                "n_collapsed": int(sum(ks)),
                "grad_norm_p90": p90,
                **boundary_columns(fit),
            }
        )
    return pd.DataFrame(out, columns=keys + SLICE_COLUMNS)


def clip_fractions(curves: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
    """Per setting: `clip_fraction`, the share of steps clipped, averaged over epochs and seeds."""
    if not len(curves):
        return pd.DataFrame(columns=list(axes) + ["clip_fraction"])
    keys = [curves[a].map(normalize) for a in axes]
    means = curves.groupby(keys, sort=False, dropna=False)["clip_fraction"].mean()
    rows = [
        dict(zip(axes, k if isinstance(k, tuple) else (k,)), clip_fraction=float(v))
        for k, v in means.items()
    ]
    return pd.DataFrame(rows, columns=list(axes) + ["clip_fraction"])


def validation_noise(tables: Any) -> ValidationNoise:
    """How finely the study's validation set resolves accuracy, and whether that is enough.

    Too coarse when some run was undecided, when some run's best beat chance + min_gain but not
    the noise floor (it may have learned; the data cannot tell), or when the resolution is
    wider than the drop a typical learned run would have to show to count as diverged.
    """
    from sweep.analysis.noise import resolution

    meta = getattr(tables, "meta", None) or {}
    task, config = meta.get("task") or {}, meta.get("config") or {}
    detect = meta.get("detect") or config.get("detect") or {}
    n_val = int(task["n_val"]) if task.get("n_val") else None
    runs, summary = tables.runs, tables.summary
    epochs = int(config.get("epochs") or (int(runs["epochs_run"].max()) if len(runs) else 0))
    floors = summary["noise_floor"] if "noise_floor" in summary else pd.Series(dtype=float)
    floor = (
        float(np.nanmax(floors))
        if len(floors) and np.isfinite(floors.astype(float)).any()
        else math.nan
    )
    if not math.isfinite(floor) and n_val and epochs > 0:  # no run finished: the learned test's
        import dataclasses  # floor from the study's facts alone, as detection computes it

        from sweep.analysis.detection import learned_floor

        known = {f.name for f in dataclasses.fields(DetectConfig)}
        thresholds = DetectConfig(**{k: v for k, v in detect.items() if k in known})
        floor = learned_floor(float(tables.chance), epochs, n_val, thresholds)
    res = resolution(n_val) if n_val else math.nan
    undecided = int(runs["undecided"].astype(bool).sum()) if "undecided" in runs else 0
    min_gain = float(detect.get("min_gain", 0.05))
    hidden = 0
    if "outcome" in runs and len(runs):
        never = runs[runs["outcome"] == "never_learned"]
        hidden = int((never["best_acc"].astype(float) >= tables.chance + min_gain).sum())
    learned = (
        runs[
            runs["outcome"].isin(["stable", "collapsed", "undecided"])
            & (runs["collapse_mode"] != "nonfinite")
        ]
        if "outcome" in runs
        else runs.iloc[0:0]
    )
    gain = (
        float(np.median(learned["best_acc"].astype(float) - tables.chance))
        if len(learned)
        else math.nan
    )
    drop = float(detect.get("drop", 0.5))
    blurred = bool(n_val) and math.isfinite(gain) and res > drop * gain
    too_coarse = bool(n_val) and (undecided > 0 or hidden > 0 or blurred)
    return ValidationNoise(
        n_val=n_val,
        resolution=res,
        floor=floor,
        chance=float(tables.chance),
        epochs=epochs,
        n_undecided=undecided,
        n_hidden=hidden,
        n_runs=len(runs),
        too_coarse=too_coarse,
        fix=_noise_fix(task, config, n_val) if too_coarse else "",
    )


def _noise_fix(task: dict[str, Any], config: dict[str, Any], n_val: int | None) -> str:
    """The concrete fix for a validation set too small to decide: which key gives more data."""
    tcfg = config.get("task") or {}
    four = 4 * int(n_val or 0)
    if "val_fraction" in tcfg:
        frac = float(tcfg.get("val_fraction") or 0.2)
        more = min(0.5, frac * 4)
        key = f"task.val_fraction={more:g}"
        if "val_path" in tcfg:
            key += " or a separate, larger validation file (task.val_path=...)"
        data = f"more validation data ({key})"
    elif "n_val" in tcfg:
        data = f"more validation data (task.n_val={four})"
    else:
        data = "more validation data"
    return (
        f"{data}: about four times the sequences ({four}) halve the noise; more seeds narrow the "
        f"collapse-rate intervals but cannot sharpen a single run's call"
    )


def present(v: Any) -> bool:
    return normalize(v) is not None
