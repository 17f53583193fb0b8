"""The figure of a sweep that started from a checkpoint: the original run's curve up to epoch N in
grey, then every setting's runs from N+1 on (figures/start_curves.png).

Usage (by `sweep.report.figures.figure_plan`)::

    plan += start_plan(tables)     # [] for a sweep from scratch

The original curve is known from a state lrsweep kept (`start.from_run`: its record up to N) or
from the original run's metrics file (`start.log`); otherwise the checkpoint's own score at epoch N
is drawn as one grey point (lrsweep's own loop measures it). One colour per setting; each seed
thin, the median over seeds thick; a collapsed seed's collapse epoch is marked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from sweep.core.setting import setting_label
from sweep.core.values import normalize
from sweep.report.figure_base import COLOR_CHANCE, new_figure, with_rc

GREY = "#8c8c8c"
PANELS = (("val_acc", "validation accuracy (val_acc)"), ("val_loss", "validation loss (val_loss)"))
MAX_SETTINGS = 12  # more settings than this: the 12 with the most collapses, then the rest


def start_plan(tables: Any) -> list[tuple[str, str, str, Callable[[], Figure]]]:
    start = (getattr(tables, "meta", None) or {}).get("start")
    if not start or not len(tables.curves):
        return []
    return [("start_curves", "figures/start_curves.png", "", lambda: start_curves(tables, start))]


@with_rc
def start_curves(tables: Any, start: dict[str, Any]) -> Figure:
    epoch = int(start.get("epoch") or 0)
    curves, axes = tables.curves, list(tables.axes)
    panels = [(c, label) for c, label in PANELS if c in curves and np.isfinite(curves[c]).any()]
    fig = new_figure(9.0, 3.0 * len(panels) + 0.6)
    grid = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    original = start.get("original") or {}
    first = int(original.get("first_epoch", 1))
    settings = _settings(tables)
    colors = _colors(len(settings))
    for ax, (column, label) in zip(grid, panels):
        known = [
            np.nan if v is None else float(v)
            for v in (original.get("curves") or {}).get(column, [])
        ]
        known = known[: max(0, epoch - first + 1)]
        if known:
            ax.plot(
                np.arange(first, first + len(known)),
                known,
                color=GREY,
                lw=1.6,
                label="original run",
            )
        row = (start.get("row") or {}).get(column)
        if row is not None:
            ax.plot([epoch], [row], "o", color=GREY, ms=5, label=f"checkpoint (epoch {epoch})")
        ax.axvline(epoch, color=GREY, ls=":", lw=1)
        for setting, color in zip(settings, colors):
            _draw_setting(ax, curves, tables.runs, axes, setting, column, color, epoch, row)
        if column == "val_acc" and tables.chance:
            ax.axhline(tables.chance, color=COLOR_CHANCE, ls="--", lw=0.8)
        if column == "val_loss" and np.nanmin(curves[column]) > 0:
            ax.set_yscale("log")
        ax.set_ylabel(label)
    grid[-1].set_xlabel("epoch (the sweep's own from the dotted line on)")
    grid[0].legend(loc="best", ncol=2, fontsize=7)
    where = start.get("from_run") or start.get("checkpoint")
    fig.suptitle(f"From the checkpoint at epoch {epoch} ({where})")
    return fig


def _settings(tables: Any) -> list[dict[str, Any]]:
    """The settings drawn: the original setting first, then the most collapsed ones."""
    rows = tables.summary.to_dict("records")
    original = ((getattr(tables, "meta", None) or {}).get("start") or {}).get("setting") or {}

    def is_original(r: dict[str, Any]) -> bool:
        return bool(original) and all(
            normalize(r.get(a)) == normalize(v) for a, v in original.items()
        )

    rows.sort(key=lambda r: (not is_original(r), -float(r.get("n_collapsed") or 0)))
    return [{a: r[a] for a in tables.axes} for r in rows[:MAX_SETTINGS]]


def _colors(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.0, 0.9, max(n, 1))]


def _draw_setting(ax, curves, runs, axes, setting, column, color, epoch, row) -> None:
    mask = np.ones(len(curves), dtype=bool)
    for a in axes:
        value = normalize(setting[a])
        col = curves[a]
        mask &= col.isna().to_numpy() if value is None else (col == value).to_numpy()
    part = curves[mask]
    if not len(part):
        return
    label = setting_label(setting, axes)
    lines = []
    for _, seed in part.groupby("seed"):
        x, y = seed["epoch"].to_numpy(), seed[column].to_numpy(dtype=float)
        if row is not None:  # every seed continues from the checkpoint's point
            x, y = np.concatenate([[epoch], x]), np.concatenate([[row], y])
        ax.plot(x, y, color=color, lw=0.6, alpha=0.5)
        lines.append(seed[column].to_numpy(dtype=float))
    width = max(len(v) for v in lines)
    stacked = np.full((len(lines), width), np.nan)
    for i, v in enumerate(lines):
        stacked[i, : len(v)] = v
    with np.errstate(all="ignore"):
        median = np.nanmedian(stacked, axis=0) if np.isfinite(stacked).any() else stacked[0]
    x = np.arange(epoch + 1, epoch + 1 + width)
    if row is not None:
        x, median = np.concatenate([[epoch], x]), np.concatenate([[row], median])
    ax.plot(x, median, color=color, lw=2.0, label=label)
    chosen = runs
    for a in axes:
        value = normalize(setting[a])
        chosen = chosen[chosen[a].isna()] if value is None else chosen[chosen[a] == value]
    for _, r in chosen[chosen["collapsed"].astype(bool)].iterrows():
        at = normalize(r.get("collapse_epoch"))
        if at is not None:
            ax.axvline(float(at), color=color, lw=0.6, ls="--", alpha=0.6)
