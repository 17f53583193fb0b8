"""Why it collapsed, per slice: every signal around the collapse, aligned on its epoch.

Usage::

    for key, setting in autopsy_settings(grid):        # one figure per slice with a collapse
        fig = autopsy_figure(tables, setting=setting, grid=grid)
    autopsy_notes(tables)                              # a line per signal no run recorded

A figure shows, for the collapsed seeds of the slice's lowest collapsing lr, epochs -K..+K around
each seed's own collapse epoch (0), against the seeds of the slice's nearest lr without any
collapse (grey, over the same epochs as the collapsed seeds' median collapse). One panel per
signal (docs/why-it-collapsed.md): the gradient norm relative to the run's median before the
collapse, the update/weight ratio, the lr over the critical step size (above 1: the step
overshoots), the saturated share, and the top class's share. Each collapsed seed's line is
titled in the legend by its chain (gradient_cliff>saturation>output_collapse), and a dot marks
the epoch its cause began.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from sweep.core.setting import setting_label, value_label
from sweep.core.values import normalize
from sweep.report.figure_base import (
    COLOR_CHANCE,
    COLOR_COLLAPSED,
    FONT,
    Grid,
    SeedCurves,
    grid_of,
    log_y,
    new_figure,
    titled_legend,
    with_rc,
)

K = 6  # epochs shown before and after the collapse
MAX_SEEDS = 8  # collapsed seeds drawn per figure
MAX_SLICES = 12  # figures per report
COLOR_STABLE = "#7f7f7f"
# (panel label, how to read it from a seed's arrays and its collapse epoch, log scale, reference)
PANELS = (
    ("grad_norm_max / its median\nbefore the collapse", "grad", True, 1.0),
    ("update_ratio\n||dw|| / ||w|| per step", "update_ratio", True, None),
    ("lr / crit_lr\n(> 1: the step overshoots)", "over", True, 1.0),
    ("sat_frac\n(saturated share)", "sat_frac", False, None),
    ("pred_top_frac\n(top class's share)", "pred_top_frac", False, None),
)
NEEDS = {"grad": "grad_norm_max", "over": "crit_lr"}


def _series(s: SeedCurves, what: str, center: int | None) -> np.ndarray:
    a = s.arrays
    n = len(a["epoch"])

    def col(name):
        return np.asarray(a.get(name, np.full(n, np.nan)), dtype=float)

    if what == "grad":
        g = col("grad_norm_max")
        upto = center - 1 if center else n
        ref = g[:upto][np.isfinite(g[:upto]) & (g[:upto] > 0)]
        return g / float(np.median(ref)) if len(ref) else np.full(n, np.nan)
    if what == "over":
        with np.errstate(divide="ignore", invalid="ignore"):
            return col("epoch_lr") / col("crit_lr")
    return col(what)


def _slices(g: Grid) -> dict[tuple, list[tuple]]:
    """Setting keys per slice (every axis but lr), in lr order."""
    li = g.axes.index("lr")
    out: dict[tuple, list[tuple]] = {}
    for key in g.summary:
        out.setdefault(key[:li] + key[li + 1 :], []).append(key)
    for keys in out.values():
        keys.sort(key=lambda k: float(k[li]))
    return out


def autopsy_settings(g: Grid, limit: int = MAX_SLICES) -> list[tuple[tuple, tuple | None]]:
    """(the lowest collapsing setting, the nearest stable setting or None) per slice whose runs
    collapsed with an autopsy, the slices with the most collapses first."""
    pairs = []
    for keys in _slices(g).values():
        hit = [k for k in keys if any(s.collapsed for s in g.seeds.get(k, []))]
        if not hit:
            continue
        first = hit[0]
        li = g.axes.index("lr")
        below = [k for k in keys if float(k[li]) < float(first[li]) and k not in hit]
        above = [k for k in keys if float(k[li]) > float(first[li]) and k not in hit]
        stable = below[-1] if below else (above[0] if above else None)
        pairs.append(
            (first, stable, sum(normalize(g.summary[k].get("n_collapsed")) or 0 for k in hit))
        )
    pairs.sort(key=lambda p: -p[2])
    return [(a, b) for a, b, _ in pairs[:limit]]


def _chains(tables: Any, key: tuple, g: Grid) -> dict[int, tuple[str, int | None]]:
    """seed -> (collapse_chain, cause_epoch) of the runs of setting `key`."""
    out = {}
    runs = tables.runs
    if "collapse_chain" not in runs:
        return out
    for r in runs.to_dict("records"):
        if tuple(normalize(r[a]) for a in g.axes) == key:
            epoch = normalize(r.get("cause_epoch"))
            out[int(r["seed"])] = (
                str(r.get("collapse_chain") or ""),
                int(epoch) if epoch is not None else None,
            )
    return out


@with_rc
def autopsy_figure(tables: Any, setting: dict[str, Any], grid: Grid | None = None) -> Figure:
    """The figure of the slice whose lowest collapsing setting is `setting`."""
    g = grid or grid_of(tables)
    key = tuple(normalize(setting.get(a)) for a in g.axes)
    stable = dict(autopsy_settings(g, limit=10**6)).get(key)
    seeds = [s for s in g.seeds.get(key, []) if s.collapsed and s.collapse_epoch][:MAX_SEEDS]
    quiet = g.seeds.get(stable, []) if stable is not None else []
    chains = _chains(tables, key, g)
    center = int(np.median([s.collapse_epoch for s in seeds])) if seeds else 0
    colors = colormaps["Reds"]
    fig = new_figure(7.5, 1.55 * len(PANELS) + 1.6)
    axes = fig.subplots(len(PANELS), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (label, what, log, ref) in zip(axes, PANELS):
        drawn = False
        for s in quiet:
            y = _series(s, what, center)
            e = np.asarray(s.arrays["epoch"], dtype=float) - center
            drawn |= _plot(ax, e, y, log, color=COLOR_STABLE, lw=0.9, alpha=0.7)
        for i, s in enumerate(seeds):
            y = _series(s, what, s.collapse_epoch)
            e = np.asarray(s.arrays["epoch"], dtype=float) - s.collapse_epoch
            color = colors(0.55 + 0.45 * i / max(1, len(seeds) - 1))
            drawn |= _plot(ax, e, y, log, color=color, lw=1.4, alpha=0.9)
            cause_epoch = chains.get(s.seed, ("", None))[1]
            if cause_epoch is not None:
                at = np.flatnonzero(np.asarray(s.arrays["epoch"]) == cause_epoch)
                if len(at) and np.isfinite(y[at[0]]) and (not log or y[at[0]] > 0):
                    ax.plot(
                        [cause_epoch - s.collapse_epoch],
                        [y[at[0]]],
                        "o",
                        color=color,
                        ms=4.5,
                        mec="black",
                        mew=0.5,
                        zorder=5,
                    )
        ax.axvline(0, color=COLOR_COLLAPSED, linestyle=":", linewidth=1.2)
        if ref is not None:
            ax.axhline(ref, color=COLOR_CHANCE, linestyle="--", linewidth=0.9)
        ax.set_ylabel(label, fontsize=FONT - 1)
        ax.grid(True, alpha=0.3)
        if not drawn:
            need = NEEDS.get(what, what)
            ax.text(
                0.5,
                0.5,
                f"{need}: not recorded",
                transform=ax.transAxes,
                ha="center",
                va="center",
                color=COLOR_CHANCE,
            )
        elif log:
            log_y(ax)
    axes[-1].set_xlabel("epoch relative to the collapse (0: the collapse epoch)")
    axes[-1].set_xlim(-K - 0.5, K + 0.5)
    handles = [
        Line2D(
            [],
            [],
            color=colors(0.55 + 0.45 * i / max(1, len(seeds) - 1)),
            lw=1.4,
            label=f"seed {s.seed}: {chains.get(s.seed, ('?', None))[0] or 'no autopsy'}",
        )
        for i, s in enumerate(seeds)
    ]
    if stable is not None:
        li = g.axes.index("lr")
        handles.append(
            Line2D(
                [],
                [],
                color=COLOR_STABLE,
                lw=0.9,
                label=f"lr={value_label(stable[li])}: no collapse (same epochs)",
            )
        )
    handles.append(
        Line2D(
            [], [], marker="o", color="black", linestyle="", ms=4.5, label="where the cause began"
        )
    )
    titled_legend(
        fig,
        handles,
        f"Why it collapsed: {setting_label(dict(zip(g.axes, key)), g.axes)}, each signal around the collapse",
    )
    return fig


def _plot(ax: Any, e: np.ndarray, y: np.ndarray, log: bool, **style: Any) -> bool:
    keep = (e >= -K - 1) & (e <= K + 1) & np.isfinite(y) & ((y > 0) if log else True)
    if not keep.any():
        return False
    y = np.where(keep, y, np.nan)
    ax.plot(
        e,
        y,
        color=style["color"],
        linewidth=style["lw"],
        alpha=style["alpha"],
        marker="." if keep.sum() < 3 else None,
    )
    return True


SIGNALS = ("update_ratio", "crit_lr", "sat_frac")  # recorded by lrsweep's loop (issue 26)


def recorded(tables: Any, name: str) -> bool:
    curves = tables.curves
    return name in curves and bool(np.isfinite(curves[name].to_numpy(dtype=float)).any())


def autopsy_notes(tables: Any) -> list[str]:
    """One line for the report where the runs with a collapse lack a signal of the figures."""
    runs = tables.runs
    if not len(runs) or "collapsed" not in runs:
        return []
    if not runs["collapsed"].fillna(False).astype(bool).any():
        return []
    if not any(recorded(tables, name) for name in SIGNALS):
        return [
            "No why-it-collapsed figures: the training recorded none of update_ratio, crit_lr, "
            "sat_frac (lrsweep's loop records them; for your own training see "
            "docs/why-it-collapsed.md), so its collapses are named only where gradient norms or "
            "the top class's share show the mechanism, and are undetermined otherwise."
        ]
    names = ("grad_norm_max", *SIGNALS, "pred_top_frac")
    missing = [name for name in names if not recorded(tables, name)]
    if not missing:
        return []
    return [
        f"The why-it-collapsed figures have no {', '.join(missing)}: the training did not record "
        f"{'it' if len(missing) == 1 else 'them'}, so the collapses that signal would explain stay "
        f"undetermined."
    ]


def autopsy_plan(tables: Any, g: Grid, slug: Any, unique: Any) -> list[tuple[str, str, str, Any]]:
    """figures.py's plan entries: (kind, name, label, builder) per slice with a collapse."""
    plan: list[tuple[str, str, str, Any]] = []
    if not any(recorded(tables, name) for name in SIGNALS):
        return plan  # (autopsy_notes says so)
    for key, _ in autopsy_settings(g):
        setting = dict(zip(g.axes, key))
        name = unique(f"figures/autopsy/{slug(setting)}.png")
        plan.append(
            (
                "autopsy",
                name,
                setting_label(setting, g.axes),
                lambda s=setting: autopsy_figure(tables, setting=s, grid=g),
            )
        )
    return plan
