"""Analysis: run records -> detection -> the runs, curves and summary tables.

Usage::

    tables = build_tables(runs, chance, detect, axes, n_val)   # (setting, record, trial) triples
    tables.runs, tables.curves, tables.summary                 # pandas DataFrames

Column names are the contract of docs/architecture.md ("Files": runs.csv, summary.csv,
curves.parquet). Everything here is a pure function of the stored records, the chance level and
the detection thresholds, so a report can be rebuilt (with other thresholds too) without
retraining.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sweep.analysis.autopsy import CAUSE_COLUMNS, cause_counts
from sweep.analysis.metric import MetricChoice, choose_metric
from sweep.analysis.run_rows import (  # noqa: F401  (run_row, shape_columns: part of this API)
    RUN_COLUMNS,
    failed_row,
    is_failed,
    run_row,
    shape_columns,
)
from sweep.analysis.stats import mean_interval, wilson_interval
from sweep.core.records import EPOCH_COLUMNS, SIGNAL_COLUMNS, SIGNAL_GROUP_PREFIXES
from sweep.core.setting import BASE_AXES, Setting
from sweep.core.values import is_finite, nanmax, nanmedian, normalize

SUMMARY_COLUMNS = [
    "n_runs",
    "mean_best_acc",
    "mean_best_acc_lo",
    "mean_best_acc_hi",
    "collapse_rate",
    "collapse_rate_lo",
    "collapse_rate_hi",
    "n_collapsed",
    "n_nonfinite",
    "n_diverged",
    "n_constant_output",
    "n_never_learned",
    "mean_final_acc",
    "mean_spikes",
    "median_collapse_epoch",
    "grad_norm_p90",
    "chance",
    "n_undecided",
    "noise_floor",
    "n_loss_jump",
    "loss_jump_rate",
    "loss_jump_rate_lo",
    "loss_jump_rate_hi",
    "volatility",
    "volatility_lo",
    "volatility_hi",
    "step_loss_cv",
    "step_loss_cv_lo",
    "step_loss_cv_hi",
    "n_crashed",
    "n_timed_out",
    "mean_best_loss",
    "mean_best_loss_lo",
    "mean_best_loss_hi",
    *CAUSE_COLUMNS,  # n_cause_<cause> (issue 26): n_cause_gradient_cliff, ... n_cause_undetermined
]


@dataclass
class Tables:
    runs: pd.DataFrame
    curves: pd.DataFrame
    summary: pd.DataFrame
    axes: list[str]
    chance: float
    meta: dict[str, Any] = field(default_factory=dict)
    metric: MetricChoice = field(default_factory=MetricChoice)  # the curve the calls read


def collapse_rate_interval(k: int, undecided: int, n: int) -> tuple[float, float, float]:
    """(rate, lo, hi) of k collapsed runs of n, with `undecided` runs the data could not call:
    the rate counts what was decided (k/n); the 95% Wilson interval runs from the lower end for
    "none of the undecided collapsed" (k/n) to the upper end for "all of them did" ((k+u)/n)."""
    rate, lo, hi = wilson_interval(k, n)
    if undecided:
        hi = wilson_interval(k + undecided, n)[2]
    return rate, lo, hi


def summarize_runs(rows: Sequence[dict[str, Any]], chance: float) -> dict[str, Any]:
    """Per-setting summary of its run rows (docs/architecture.md: t interval of the mean, Wilson
    rate).
    Runs that crashed or timed out are counted (n_crashed, n_timed_out), not summarised."""
    failed = [r for r in rows if is_failed(r)]
    rows = [r for r in rows if not is_failed(r)]
    n = len(rows)
    best = [r["best_acc"] for r in rows]
    mean, lo, hi = mean_interval(best) if any(map(is_finite, best)) else (math.nan,) * 3
    losses = [float(r["best_loss"]) for r in rows if is_finite(r.get("best_loss"))]
    loss_mean, loss_lo, loss_hi = _loss_interval(losses)
    k = sum(bool(r["collapsed"]) for r in rows)
    undecided = sum(bool(r.get("undecided", False)) for r in rows)
    rate, rlo, rhi = collapse_rate_interval(k, undecided, n)
    modes = [r["collapse_mode"] for r in rows]
    finals = [
        r["final_acc"]
        for r in rows
        if isinstance(r["final_acc"], float) and math.isfinite(r["final_acc"])
    ]
    epochs = [
        r["collapse_epoch"]
        for r in rows
        if r["collapse_epoch"] is not None and not _isnan(r["collapse_epoch"])
    ]
    return {
        "n_runs": n,
        "mean_best_acc": mean,
        "mean_best_acc_lo": lo,
        "mean_best_acc_hi": hi,
        "collapse_rate": rate,
        "collapse_rate_lo": rlo,
        "collapse_rate_hi": rhi,
        "n_collapsed": k,
        "n_nonfinite": modes.count("nonfinite"),
        "n_diverged": modes.count("diverged"),
        "n_constant_output": modes.count("constant_output"),
        "n_never_learned": sum(bool(r["never_learned"]) for r in rows),
        "mean_final_acc": float(np.mean(finals)) if finals else math.nan,
        "mean_spikes": float(np.mean([r["spikes"] for r in rows])) if rows else math.nan,
        "median_collapse_epoch": float(np.median(epochs)) if epochs else math.nan,
        "grad_norm_p90": nanmedian(np.asarray([r["grad_norm_p90"] for r in rows], dtype=float)),
        "chance": chance,
        "n_undecided": undecided,
        # The floor of the runs' full length (a run stopped early was held to a lower one).
        "noise_floor": nanmax(
            np.asarray([r.get("noise_floor", math.nan) for r in rows], dtype=float)
        ),
        **_shape_summary(rows),
        "n_crashed": len(failed),
        "n_timed_out": sum(1 for r in failed if r.get("outcome") == "timed_out"),
        "mean_best_loss": loss_mean,
        "mean_best_loss_lo": loss_lo,
        "mean_best_loss_hi": loss_hi,
        **cause_counts(rows),  # n_cause_<cause>: why its runs collapsed (issue 26)
    }


def _loss_interval(losses: Sequence[float]) -> tuple[float, float, float]:
    """Mean best loss with its Student-t 95% interval (NaN without losses; inf where the losses
    are too large to add, a run that blew up to ~1e308)."""
    if not losses:
        return math.nan, math.nan, math.nan
    try:
        return mean_interval(losses, bounds=(0.0, math.inf))
    except OverflowError:
        return math.inf, math.inf, math.inf


def _shape_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per setting: the rate of runs with a loss jump (Wilson 95%), and the mean volatility and
    step_loss_cv of the training loss (Student-t 95%; one seed: no upper end, inf)."""
    jumps = sum(
        1
        for r in rows
        if r.get("loss_jump_epoch") is not None and not _isnan(r.get("loss_jump_epoch"))
    )
    rate, lo, hi = wilson_interval(jumps, len(rows)) if rows else (math.nan, 0.0, 1.0)
    out = {
        "n_loss_jump": jumps,
        "loss_jump_rate": rate,
        "loss_jump_rate_lo": lo,
        "loss_jump_rate_hi": hi,
    }
    for column in ("volatility", "step_loss_cv"):
        values = [float(r[column]) for r in rows if is_finite(r.get(column))]
        mean, vlo, vhi = (
            mean_interval(values, bounds=(0.0, math.inf))
            if values
            else (math.nan, math.nan, math.nan)
        )
        out.update({column: mean, f"{column}_lo": vlo, f"{column}_hi": vhi})
    return out


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def trial_summary(
    records: Sequence[dict[str, Any]],
    chance: float | None,
    detect: Any,
    n_val: int | None = None,
    asked: str = "acc",
    chance_loss: float | None = None,
) -> dict[str, Any]:
    """The readable attributes stored on a finished trial (what optuna-dashboard shows).
    `asked`: the metric the config asks for (`sweep.analysis.metric.asked_metric`)."""
    choice = choose_metric(records, asked, n_val, chance, detect)
    chance = float(chance or 0.0)
    rows = [run_row(r, chance, detect, n_val, choice.curve, chance_loss) for r in records]
    s = summarize_runs(rows, chance)
    finished = [r for r in rows if not is_failed(r)]
    return {
        "metric": choice.curve,
        "mean_best_loss": s["mean_best_loss"] if math.isfinite(s["mean_best_loss"]) else None,
        "mean_best_acc": s["mean_best_acc"],
        "collapse_rate": s["collapse_rate"],
        "n_runs": s["n_runs"],
        "n_collapsed": s["n_collapsed"],
        "n_undecided": s["n_undecided"],
        "collapse_modes": {
            m: sum(r["collapse_mode"] == m for r in rows)
            for m in ("nonfinite", "diverged", "constant_output")
        },
        "best_acc_per_seed": {
            str(r["seed"]): round(r["best_acc"], 4) for r in finished if is_finite(r["best_acc"])
        },
        "grad_norm_p90": s["grad_norm_p90"] if math.isfinite(s["grad_norm_p90"]) else None,
        "chance": chance,
        "seconds": round(sum(r["seconds"] for r in rows if math.isfinite(r["seconds"])), 2),
        # Seeds whose run crashed or timed out: not done, the same command runs them again.
        "failed_seeds": [int(r["seed"]) for r in rows if is_failed(r)],
    }


def build_tables(
    runs: Iterable[tuple[dict[str, Any], dict[str, Any], int]],
    chance: float | None,
    detect: Any,
    axes: list[str] | None = None,
    n_val: int | None = None,
    asked: str = "acc",
    chance_loss: float | None = None,
) -> Tables:
    """Tables from (setting, decoded record, trial number) triples, deduplicated by (setting, seed).

    `chance`: the chance level (None: not stated; a run's own statement comes first, and an
    accuracy nobody can judge makes the calls read the loss). `n_val`: the validation sequences
    every accuracy was measured on (detection accounts for their sampling noise; None ignores
    it). `asked`: the curve the config asks the calls to read ("acc", "loss" or "auto", see
    `sweep.analysis.metric`); `chance_loss`: the loss of knowing nothing, the reference of calls
    from the loss (None: each run's first logged loss).

    Parallel workers (or a re-run after a lost result) can produce a (setting, seed) twice; the
    record of the lowest trial number is kept, so the tables never count a run twice.
    """
    seen: set[tuple[Any, ...]] = set()
    run_rows: list[dict[str, Any]] = []
    kept: list[tuple[dict[str, Any], dict[str, Any]]] = []
    axes = list(axes) if axes else None
    # A run that finished beats one that crashed (a retry), whatever their order; otherwise the
    # lowest trial number wins.
    runs = sorted(runs, key=lambda r: (bool(r[1].get("failure")), r[2]))
    choice = choose_metric([record for _, record, _ in runs], asked, n_val, chance, detect)
    chance = float(chance or 0.0)
    for setting, record, trial in runs:
        if axes is None:
            axes = list(setting)
        for key in setting:
            if key not in axes:
                axes.append(key)
        ident = (Setting({a: setting.get(a) for a in axes}), int(record["seed"]))
        if ident in seen:
            continue
        seen.add(ident)
        row = {a: setting.get(a) for a in axes}
        row.update(run_row(record, chance, detect, n_val, choice.curve, chance_loss))
        row["trial"] = trial
        run_rows.append(row)
        kept.append((setting, record))
    axes = axes or list(BASE_AXES)
    runs_df = pd.DataFrame(run_rows, columns=axes + RUN_COLUMNS)
    for col in (
        "best_epoch",
        "collapse_epoch",
        "trial",
        "seed",
        "spikes",
        "epochs_run",
        "loss_jump_epoch",
        "cause_epoch",
    ):
        runs_df[col] = runs_df[col].astype("Int64")  # integers with empty cells, not 3.0
    if len(runs_df):
        runs_df = runs_df.sort_values(
            axes + ["seed"], key=_sort_key, kind="stable", na_position="first"
        ).reset_index(drop=True)
    curves_df = _curves_frame(kept, axes)
    if len(curves_df):
        curves_df = curves_df.sort_values(
            axes + ["seed", "epoch"], key=_sort_key, kind="stable", na_position="first"
        ).reset_index(drop=True)
    summary_df = summary_table(runs_df, axes, chance)
    return Tables(
        runs=runs_df,
        curves=curves_df,
        summary=summary_df,
        axes=axes,
        chance=chance,
        metric=choice,
    )


# Per parameter group (and the signals of why a run collapsed, issue 26): one wide column each.
GROUP_CURVES = ("grad_norm_mean/", "grad_norm_max/", *SIGNAL_GROUP_PREFIXES)


def _curves_frame(
    kept: list[tuple[dict[str, Any], dict[str, Any]]], axes: list[str]
) -> pd.DataFrame:
    """One row per (run, epoch), built from whole columns (one concatenation per column, not one
    DataFrame per run: studies of 10,000 runs stay fast). Per-group gradient norms are wide
    columns `grad_norm_mean/<group>` and `grad_norm_max/<group>` (NaN where a model has no such
    group)."""
    if not kept:
        return pd.DataFrame(columns=axes + ["seed", "epoch", *EPOCH_COLUMNS])
    # The contract's columns, then the per-group curves of the records, in their recorded order.
    extra = list(
        dict.fromkeys(
            c
            for _, rec in kept
            for c in rec["curves"]
            if c in SIGNAL_COLUMNS or c.startswith(GROUP_CURVES)
        )
    )
    lengths = np.array([len(rec["curves"]["val_acc"]) for _, rec in kept])
    cols: dict[str, Any] = {}
    for a in axes:
        values = [setting.get(a) for setting, _ in kept]
        cols[a] = np.repeat(np.array(values, dtype=object), lengths)
    cols["seed"] = np.repeat(np.array([int(rec["seed"]) for _, rec in kept]), lengths)
    cols["epoch"] = np.concatenate([np.arange(1, n + 1) for n in lengths])
    for col in (*EPOCH_COLUMNS, *extra):
        cols[col] = np.concatenate(
            [
                np.asarray(rec["curves"][col], dtype=float)
                if col in rec["curves"]
                else np.full(n, np.nan)
                for (_, rec), n in zip(kept, lengths)
            ]
        )
    df = pd.DataFrame(cols)
    for a in axes:  # numeric axes as numbers (None -> NaN), the rest as they are
        converted = pd.to_numeric(df[a], errors="coerce")
        if converted.notna().sum() == df[a].notna().sum():
            df[a] = converted
    return df


def summary_table(runs: pd.DataFrame, axes: list[str], chance: float) -> pd.DataFrame:
    """One row per setting, in grid order (None clip first: no clipping)."""
    rows = []
    if len(runs):
        keys = [Setting.of(r, axes).key for r in runs[axes].to_dict("records")]
        for _, group in runs.groupby(keys, sort=False):
            first = group.iloc[0]
            row = {a: first[a] for a in axes}
            row.update(summarize_runs(group.to_dict("records"), chance))
            rows.append(row)
    df = pd.DataFrame(rows, columns=axes + SUMMARY_COLUMNS)
    if len(df):
        df = df.sort_values(axes, key=_sort_key, kind="stable", na_position="first").reset_index(
            drop=True
        )
    return df


def _order(value: Any) -> tuple[int, float, str]:
    """Grid order of an axis value: absent (no clipping) first, then numbers, then text."""
    value = normalize(value)
    if value is None:
        return (0, 0.0, "")
    return (1, float(value), "") if isinstance(value, (int, float)) else (2, 0.0, str(value))


def _sort_key(col: pd.Series) -> pd.Series:
    """Sort numbers numerically with None (no clipping) first."""
    if col.dtype == object:
        return col.map(_order)
    return col
