"""A sweep that started from a checkpoint, read as one: epochs counted on from the checkpoint's,
the checkpoint's own scores as the runs' starting point, and the verdict's line about where it
started and how the original setting fares from there.

Usage (by `sweep.report.write.study_tables` and `compute_verdicts`)::

    runs = with_start_row(runs, start)      # before detection: the checkpoint's scores first
    shift_epochs(tables, start)             # after: epochs N+1.. (N: the checkpoint's epoch)
    start_lines(tables)                     # [Line("Started from ..."), Line("From epoch N, ...")]

`start` is the study's `lrsweep.start` attribute (`sweep.training.start_facts`); None from scratch.
Detection sees the sweep's own epochs, preceded by the run's history where it is known: the
original run's last epochs (a kept state's curve, or `start.log`) and the checkpoint's own scores
(lrsweep's loop measures them; a user's training: the log's epoch N). A run that loses in its first
epoch what the checkpoint knew is then a collapse, not a run that "never learned". Those rows are
the original run's, not the sweep's: curves.parquet and `epochs_run` leave them out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sweep.analysis.reading import Line
from sweep.analysis.tables import summary_table
from sweep.core.setting import BASE_AXES, Setting, value_label
from sweep.core.values import normalize


def with_start_row(
    runs: Sequence[tuple[dict[str, Any], dict[str, Any], int]], start: dict[str, Any] | None
) -> list[tuple[dict[str, Any], dict[str, Any], int]]:
    """Every decoded record with the original run's last epochs before it, the checkpoint's own
    scores last (NaN where there is no score: gradient norms, signals); as they are without."""
    rows = history(start)
    if not rows:
        return list(runs)
    out = []
    for setting, record, trial in runs:
        record = dict(record)
        record["curves"] = {
            k: np.concatenate([[_value(r.get(k)) for r in rows], np.asarray(v, dtype=float)])
            for k, v in record["curves"].items()
        }
        if record.get("nonfinite_epoch") is not None:
            record["nonfinite_epoch"] = int(record["nonfinite_epoch"]) + len(rows)
        out.append((setting, record, trial))
    return out


def history(start: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The rows before the sweep's epochs N+1..: the original's last epochs, ending at epoch N."""
    start = start or {}
    return list(start.get("history") or ([start["row"]] if start.get("row") else []))


def _value(v: Any) -> float:
    return float(v) if v is not None else math.nan


def shift_epochs(tables: Any, start: dict[str, Any] | None) -> None:
    """Count the tables' epochs on from the checkpoint's epoch N (the sweep's first is N+1), drop
    the history rows (epochs up to N) from the curves, and take each run's best (best_acc,
    best_epoch, best_loss) and the summary from the sweep's own epochs (in place): the calls saw
    the history, the scores are the sweep's."""
    if not start:
        return
    epoch = int(start.get("epoch") or 0)
    prepended = len(history(start))
    offset = epoch - prepended
    runs = tables.runs
    for frame in (runs, tables.summary):
        for col in [c for c in frame.columns if c.endswith("_epoch")]:
            frame[col] = frame[col] + offset
    if prepended and "epochs_run" in runs:
        runs["epochs_run"] = runs["epochs_run"] - prepended
    curves = tables.curves
    if len(curves):
        curves["epoch"] = curves["epoch"] + offset
        tables.curves = curves[curves["epoch"] > epoch].reset_index(drop=True)
    if prepended and len(runs):
        _own_best(runs, tables.curves, list(tables.axes))
        tables.summary = summary_table(runs, list(tables.axes), tables.chance)


def _own_best(runs: pd.DataFrame, curves: pd.DataFrame, axes: list[str]) -> None:
    """best_acc, best_epoch and best_loss of every run over its own epochs (`curves`)."""
    by_run: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
    columns = [c for c in ("epoch", "val_acc", "val_loss", "train_loss") if c in curves]
    keys = [
        tuple(normalize(v) for v in key) for key in curves[[*axes, "seed"]].itertuples(index=False)
    ]
    values = {c: curves[c].to_numpy(dtype=float) for c in columns}
    for i, key in enumerate(keys):
        by_run.setdefault(key, {c: [] for c in columns})
        for c in columns:
            by_run[key][c].append(values[c][i])
    for i, row in runs.iterrows():
        own = by_run.get(tuple(normalize(row[a]) for a in [*axes, "seed"]))
        if not own:
            continue
        metric = row.get("metric") or "val_acc"
        curve = np.asarray(own.get(metric, []), dtype=float)
        if metric == "val_acc":
            acc = curve
            loss = np.asarray(own.get("val_loss", own.get("train_loss", [])), dtype=float)
            if np.isfinite(acc).any():
                k = int(np.nanargmax(np.where(np.isfinite(acc), acc, -np.inf)))
                runs.at[i, "best_acc"], runs.at[i, "best_epoch"] = (
                    float(acc[k]),
                    int(own["epoch"][k]),
                )
        else:
            loss = curve
            if np.isfinite(loss).any():
                runs.at[i, "best_epoch"] = int(
                    own["epoch"][int(np.nanargmin(np.where(np.isfinite(loss), loss, np.inf)))]
                )
        if "best_loss" in runs and np.isfinite(loss).any():
            runs.at[i, "best_loss"] = float(np.nanmin(loss))


# --------------------------------------------------------------------------- the verdict's lines


def start_lines(tables: Any) -> list[Line]:
    """Where the sweep started, and each setting's collapses from there, the original first."""
    start = (getattr(tables, "meta", None) or {}).get("start")
    if not start:
        return []
    return [
        Line(started_text(start), topic="start"),
        Line(from_epoch_text(tables, start), "collapse_rate", "start"),
    ]


def started_text(start: dict[str, Any]) -> str:
    epoch = int(start.get("epoch") or 0)
    where = (
        f"the state lrsweep kept as {start['from_run']} ({start['checkpoint']})"
        if start.get("from_run")
        else start["checkpoint"]
    )
    digest = (start.get("sha256") or "")[:12]
    text = (
        f"Every run started from {where} (sha256 {digest}...), saved after epoch {epoch}: "
        f"epochs count on from {epoch + 1}"
    )
    if start.get("trainer", "builtin") == "builtin":
        if start.get("optimizer") == "fresh":
            text += ", with a fresh optimizer"
        elif start.get("optimizer_state"):
            text += ", with its optimizer state restored"
        else:
            text += ", with a fresh optimizer (the checkpoint holds no optimizer state)"
    row = start.get("row") or {}
    scores = [
        f"{name} {row[key]:.3g}"
        for key, name in (("val_acc", "validation accuracy"), ("val_loss", "validation loss"))
        if row.get(key) is not None
    ]
    if scores:
        text += f"; the checkpoint's {' and '.join(scores)}"
    return text + "."


def from_epoch_text(tables: Any, start: dict[str, Any]) -> str:
    """ "From epoch 900, the original lr 0.01 collapses in 4 of 5 data orders; lr 0.003 in 0 of 5;
    clipping at 1 in 1 of 5." (settings that differ from the original in one axis, then the rest)."""
    epoch = int(start.get("epoch") or 0)
    summary, axes = tables.summary, list(tables.axes)
    if not len(summary):
        return f"From epoch {epoch}, no run has finished yet."
    rows = summary.to_dict("records")
    varied = [a for a in axes if len({Setting({a: r.get(a)}).key for r in rows}) > 1]
    original = start.get("setting") or {}
    base = [
        r
        for r in rows
        if original and all(Setting({a: r.get(a)}) == Setting({a: v}) for a, v in original.items())
    ]
    parts = []
    if len(base) == 1:
        o = base[0]
        parts.append(f"the original {_label(o, varied or ['lr'])} {_count(o, True)}")
        others = [r for r in rows if r is not o]
        differing = {
            id(r): [a for a in varied if Setting({a: r.get(a)}) != Setting({a: o.get(a)})]
            for r in others
        }
        others.sort(
            key=lambda r: (len(differing[id(r)]), [axes.index(a) for a in differing[id(r)]])
        )
        parts += [f"{_label(r, differing[id(r)])} {_count(r)}" for r in others]
    else:
        parts += [f"{_label(r, varied or ['lr'])} {_count(r, not parts)}" for r in rows]
        if original and not base:
            parts.append(f"(the original setting {_named(original)} has no finished run yet)")
    shown = parts[:8] + (
        [f"and {len(parts) - 8} more settings in summary.csv"] if len(parts) > 8 else []
    )
    return f"From epoch {epoch}, " + "; ".join(shown) + "."


def _named(setting: dict[str, Any]) -> str:
    return ", ".join(f"{a}={value_label(v)}" for a, v in setting.items())


def _label(row: dict[str, Any], axes: Sequence[str]) -> str:
    words = []
    for a in axes:
        v = row.get(a)
        if a == "clip":
            clip = None if v is None or (isinstance(v, float) and math.isnan(v)) else v
            words.append("no clipping" if clip is None else f"clipping at {value_label(clip)}")
        elif a == "batch_size":
            words.append(f"batch size {value_label(v)}")
        elif a in BASE_AXES:
            words.append(f"{a} {value_label(v)}")
        else:
            words.append(f"{a}={value_label(v)}")
    return " with ".join(words) if words else "it"


def _count(row: dict[str, Any], first: bool = False) -> str:
    k = _int(row.get("n_collapsed"))
    n = _int(row.get("n_runs"))
    return f"collapses in {k} of {n} data orders" if first else f"in {k} of {n}"


def _int(v: Any) -> int:
    try:
        return 0 if v is None or pd.isna(v) else int(v)
    except (TypeError, ValueError):
        return 0
