"""Per-setting traces: every seed's learning curves and gradient norms, collapses marked.

Usage: ``learning_curves(tables, panel=...)`` or ``learning_curves(tables, setting={...})``, and
``grad_norm_traces(...)`` the same way. A grid of settings (rows lr, columns clip) per panel, or
one setting per figure for large grids.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory

from sweep.analysis.verdicts import CLIP_FRACTION_TOO_HIGH
from sweep.core.setting import setting_label, value_label
from sweep.core.values import normalize
from sweep.report.figure_base import (
    COLOR_CHANCE,
    COLOR_CLIP,
    COLOR_COLLAPSED,
    COLOR_FLOOR,
    COLOR_JUMP,
    COLOR_NONFINITE,
    COLOR_OK,
    DPI,
    FONT,
    Grid,
    SeedCurves,
    finite,
    grid_of,
    legend_shape,
    log_y,
    with_rc,
    wrap,
)


def _positive(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=float).copy()
    v[~(v > 0)] = np.nan  # a log axis cannot show 0 or NaN; gaps rather than warnings
    return v


def _mark_end(ax: Any, epochs: np.ndarray, values: np.ndarray) -> None:
    """An x at the last epoch of a run that went non-finite, at its last finite value."""
    finite = np.flatnonzero(np.isfinite(values))
    x = epochs[-1] if len(epochs) else 1
    if len(finite):
        ax.plot(
            [x],
            [values[finite[-1]]],
            marker="x",
            color=COLOR_NONFINITE,
            markersize=7,
            mew=1.8,
            zorder=5,
        )
    else:
        ax.plot(
            [x],
            [0.5],
            marker="x",
            color=COLOR_NONFINITE,
            markersize=7,
            mew=1.8,
            zorder=5,
            transform=blended_transform_factory(ax.transData, ax.transAxes),
        )


def _mark_collapse(axes: Sequence[Any], s: SeedCurves) -> None:
    if s.collapsed and s.collapse_epoch is not None:
        for ax in axes:
            ax.axvline(
                s.collapse_epoch, color=COLOR_COLLAPSED, linestyle=":", linewidth=1.2, zorder=1
            )


def _mark_jump(ax_loss: Any, s: SeedCurves) -> None:
    """A triangle on the val_loss curve where a jump that never recovered starts."""
    if s.loss_jump_epoch is None:
        return
    e, loss = s.arrays["epoch"], _positive(s.arrays["val_loss"])
    at = np.flatnonzero(e == s.loss_jump_epoch)
    if len(at) and np.isfinite(loss[at[0]]):
        ax_loss.plot(
            [s.loss_jump_epoch],
            [loss[at[0]]],
            marker="^",
            color=COLOR_JUMP,
            markersize=7,
            markeredgecolor="black",
            mew=0.6,
            linestyle="",
            zorder=6,
        )


def _bottom_curve(g: Grid) -> str:
    """The loss drawn under the top panel: val_loss, or train_loss where val_loss is on top."""
    return "train_loss" if g.score.lower_is_better and g.curve == "val_loss" else "val_loss"


def _draw_learning(
    ax_acc: Any,
    ax_loss: Any,
    seeds: Sequence[SeedCurves],
    g: Grid,
    clip: Any,
    floor: float = math.nan,
) -> None:
    for s in sorted(seeds, key=lambda s: s.collapsed):  # collapsed seeds on top
        color, z = (COLOR_COLLAPSED, 3) if s.collapsed else (COLOR_OK, 2)
        e = s.arrays["epoch"]
        marker = "." if len(e) < 2 else None
        top = s.arrays[g.curve] if g.score.lower_is_better else s.arrays["val_acc"]
        if g.score.lower_is_better:
            top = _positive(top)
        ax_acc.plot(e, top, color=color, linewidth=1.1, alpha=0.85, zorder=z, marker=marker)
        loss = _positive(s.arrays[_bottom_curve(g)])
        ax_loss.plot(e, loss, color=color, linewidth=1.1, alpha=0.85, zorder=z, marker=marker)
        _mark_collapse((ax_acc, ax_loss), s)
        _mark_jump(ax_loss, s)
        if s.nonfinite:
            _mark_end(ax_acc, e, top)
            _mark_end(ax_loss, e, loss)
    if g.score.lower_is_better:  # a loss study: the loss of knowing nothing, no accuracy floor
        if finite(g.reference):
            ax_acc.axhline(g.reference, color=COLOR_CHANCE, linestyle="--", linewidth=1, zorder=1)
        return
    if finite(g.chance):
        ax_acc.axhline(g.chance, color=COLOR_CHANCE, linestyle="--", linewidth=1, zorder=1)
    if finite(floor) and floor <= 1.0:
        ax_acc.axhline(floor, color=COLOR_FLOOR, linestyle="-.", linewidth=1.0, zorder=1)


def _draw_grad(
    ax_norm: Any,
    ax_frac: Any,
    seeds: Sequence[SeedCurves],
    g: Grid,
    clip: Any,
    floor: float = math.nan,
) -> None:
    for s in sorted(seeds, key=lambda s: s.collapsed):
        color, z = (COLOR_COLLAPSED, 3) if s.collapsed else (COLOR_OK, 2)
        e = s.arrays["epoch"]
        marker = "." if len(e) < 2 else None
        ax_norm.plot(
            e,
            _positive(s.arrays["grad_norm_mean"]),
            color=color,
            linewidth=1.1,
            alpha=0.85,
            zorder=z,
            marker=marker,
        )
        gmax = _positive(s.arrays["grad_norm_max"])
        ax_norm.plot(
            e, gmax, color=color, linewidth=0.8, linestyle="--", alpha=0.7, zorder=z, marker=marker
        )
        ax_frac.plot(
            e,
            s.arrays["clip_fraction"],
            color=color,
            linewidth=1.1,
            alpha=0.85,
            zorder=z,
            marker=marker,
        )
        _mark_collapse((ax_norm, ax_frac), s)
        if s.nonfinite:
            _mark_end(ax_norm, e, gmax)
    if clip is not None:
        ax_norm.axhline(float(clip), color=COLOR_CLIP, linestyle="-.", linewidth=1.4, zorder=4)
        ax_frac.axhline(
            CLIP_FRACTION_TOO_HIGH, color=COLOR_CHANCE, linestyle=":", linewidth=1, zorder=1
        )
    else:
        ax_frac.text(
            0.5,
            0.55,
            "no clipping",
            transform=ax_frac.transAxes,
            ha="center",
            va="center",
            color=COLOR_CHANCE,
            fontsize=FONT - 1,
        )


def _seed_handles(kind: str, g: Grid | None = None) -> list[Any]:
    if kind == "learning_curves" and g is not None and g.score.lower_is_better:
        handles = _seed_handles(kind)[:5]  # a loss study: no accuracy chance line or floor
        if finite(g.reference):
            handles.append(
                Line2D([], [], color=COLOR_CHANCE, linestyle="--", label="loss of knowing nothing")
            )
        return handles
    if kind == "learning_curves":
        return [
            Line2D([], [], color=COLOR_OK, label="seed (no collapse)"),
            Line2D([], [], color=COLOR_COLLAPSED, label="collapsed seed"),
            Line2D([], [], color=COLOR_COLLAPSED, linestyle=":", label="collapse epoch"),
            Line2D(
                [],
                [],
                color=COLOR_NONFINITE,
                marker="x",
                linestyle="",
                mew=1.8,
                label="non-finite (run stopped)",
            ),
            Line2D(
                [],
                [],
                color=COLOR_JUMP,
                marker="^",
                markeredgecolor="black",
                mew=0.6,
                linestyle="",
                label="loss jump (never recovered)",
            ),
            Line2D([], [], color=COLOR_CHANCE, linestyle="--", label="chance"),
            Line2D(
                [],
                [],
                color=COLOR_FLOOR,
                linestyle="-.",
                label="noise floor (best epoch, nothing learned)",
            ),
        ]
    return [
        Line2D([], [], color=COLOR_OK, label="grad_norm_mean"),
        Line2D([], [], color=COLOR_OK, linestyle="--", linewidth=0.8, label="grad_norm_max"),
        Line2D([], [], color=COLOR_COLLAPSED, label="collapsed seed"),
        Line2D([], [], color=COLOR_COLLAPSED, linestyle=":", label="collapse epoch"),
        Line2D(
            [], [], color=COLOR_NONFINITE, marker="x", linestyle="", mew=1.8, label="non-finite"
        ),
        Line2D([], [], color=COLOR_CLIP, linestyle="-.", label="clip threshold"),
        Line2D([], [], color=COLOR_CHANCE, linestyle=":", label="clip_fraction 0.5"),
    ]


_TRACES = {
    # kind: (draw, top y label, bottom y label, log top, log bottom, suptitle)
    "learning_curves": (
        _draw_learning,
        "val_acc (fraction)",
        None,
        False,
        True,
        "val_acc and val_loss of every seed per epoch",
    ),
    "grad_norms": (
        _draw_grad,
        "grad_norm (L2, log)",
        "clip_fraction\n(of steps)",
        True,
        False,
        "gradient norm before clipping and clip_fraction of every seed per epoch",
    ),
}


# Trace grids are laid out by hand (sizes in inches): with 64 panels, constrained layout and
# shared axes make saving a figure several times slower (every panel's tight box, every sibling's
# limits), while this regular grid needs only fixed margins. Limits are made equal explicitly.
PANEL_W, PANEL_H = 3.1, 1.15  # one axes
PAIR_GAP, TITLE_GAP, COL_GAP = (
    0.08,
    0.36,
    0.18,
)  # between the two panels of a setting, above a title, columns
LEFT, RIGHT, BOTTOM = 0.95, 0.2, 0.55


def _traces(g: Grid, kind: str, cells: list[list[tuple[Any, ...] | None]], title: str) -> Figure:
    """A grid of settings (rows x columns of setting keys, None = not run), two panels each."""
    draw, top_label, bottom_label, log_top, log_bottom, what = _TRACES[kind]
    bottom_label = bottom_label or g.loss_label
    if kind == "learning_curves" and g.score.lower_is_better:  # the calls read a loss curve
        top_label, log_top = f"{g.curve} (log)", True
        if _bottom_curve(g) != "val_loss":
            bottom_label = f"{_bottom_curve(g)} (log)"
        what = (
            f"{g.curve} (the curve the calls read) and {_bottom_curve(g)} of every seed per epoch"
        )
    nrows, ncols = len(cells), len(cells[0])
    # A figure of one setting gets roomier panels (it is looked at alone).
    panel_w, panel_h = (PANEL_W, PANEL_H) if nrows * ncols > 1 else (5.5, 1.7)
    width = LEFT + ncols * panel_w + (ncols - 1) * COL_GAP + RIGHT
    handles = _seed_handles(kind, g)
    legend_cols, legend_h = legend_shape(handles, f"{title}: {what}", width)
    top_margin = legend_h + TITLE_GAP
    cell_h = 2 * panel_h + PAIR_GAP
    height = top_margin + nrows * cell_h + (nrows - 1) * TITLE_GAP + BOTTOM
    fig = Figure(figsize=(width, height), dpi=DPI)
    outer = fig.add_gridspec(
        nrows,
        ncols,
        left=LEFT / width,
        right=1 - RIGHT / width,
        bottom=BOTTOM / height,
        top=1 - top_margin / height,
        hspace=TITLE_GAP / cell_h,
        wspace=COL_GAP / panel_w,
    )
    epochs = max((len(s.arrays["epoch"]) for seeds in g.seeds.values() for s in seeds), default=1)
    ci_of = g.axes.index("clip") if "clip" in g.axes else None
    tops, bottoms = [], []
    for r, row in enumerate(cells):
        for c, key in enumerate(row):
            inner = outer[r, c].subgridspec(2, 1, hspace=PAIR_GAP / panel_h)
            top, bottom = fig.add_subplot(inner[0]), fig.add_subplot(inner[1])
            tops.append(top)
            bottoms.append(bottom)
            for ax, log in ((top, log_top), (bottom, log_bottom)):
                if log:
                    ax.set_yscale("log")
            if key is None:
                top.set_title("not run")
            else:
                clip = key[ci_of] if ci_of is not None else None
                floor = normalize(g.summary.get(key, {}).get("noise_floor"))
                draw(
                    top,
                    bottom,
                    g.seeds.get(key, []),
                    g,
                    clip,
                    math.nan if floor is None else float(floor),
                )
                top.set_title(_short_label(key, g), fontsize=FONT)
            top.tick_params(labelbottom=False)
            bottom.tick_params(labelbottom=(r == nrows - 1))
            if r == nrows - 1:
                bottom.set_xlabel("epoch")
            if c == 0:
                top.set_ylabel(top_label)
                bottom.set_ylabel(bottom_label)
            else:
                top.tick_params(labelleft=False)
                bottom.tick_params(labelleft=False)
            for ax in (top, bottom):
                ax.grid(True, alpha=0.3)
                ax.set_xlim(0.5, epochs + 0.5)
                ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    for group, log in ((tops, log_top), (bottoms, log_bottom)):
        _same_y(group, log)
    fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.05 / height),
        ncols=legend_cols,
        frameon=False,
        title=wrap(f"{title}: {what}", width, FONT + 1),
        title_fontsize=FONT + 1,
    )
    return fig


def _same_y(axes: list[Any], log: bool) -> None:
    """One y range for a row kind of a trace grid (what sharey would give, without its cost)."""
    if not log:
        for ax in axes:
            ax.set_ylim(-0.03, 1.03)
        return
    lows = [ax.dataLim.y0 for ax in axes if np.isfinite(ax.dataLim.y0) and ax.dataLim.y0 > 0]
    highs = [ax.dataLim.y1 for ax in axes if np.isfinite(ax.dataLim.y1) and ax.dataLim.y1 > 0]
    lo, hi = (min(lows), max(highs)) if lows and highs else (0.1, 10.0)
    if hi <= lo:
        lo, hi = lo / 2, hi * 2
    for ax in axes:
        ax.set_ylim(lo / 1.25, hi * 1.25)
        log_y(ax)


def _short_label(key: tuple[Any, ...], g: Grid) -> str:
    """lr and clip of a setting (the panel's other axes are in the figure title)."""
    values = dict(zip(g.axes, key))
    return f"lr={value_label(values['lr'])}, clip {value_label(values.get('clip'))}"


def _panel_cells(g: Grid, panel: tuple[Any, ...]) -> list[list[tuple[Any, ...] | None]]:
    return [
        [
            g.key(lr, clip, panel) if g.key(lr, clip, panel) in g.summary else None
            for clip in g.clips
        ]
        for lr in g.lrs
    ]


@with_rc
def learning_curves(
    tables: Any,
    panel: tuple[Any, ...] | None = None,
    setting: dict[str, Any] | None = None,
    grid: Grid | None = None,
) -> Figure:
    """val_acc and val_loss of every seed vs epoch: the grid of one panel (rows lr, columns clip),
    or one setting when `setting` is given. `panel` defaults to the first batch size."""
    return _traces_figure(grid or grid_of(tables), "learning_curves", panel, setting)


@with_rc
def grad_norm_traces(
    tables: Any,
    panel: tuple[Any, ...] | None = None,
    setting: dict[str, Any] | None = None,
    grid: Grid | None = None,
) -> Figure:
    """grad_norm_mean/grad_norm_max (log) with the clip threshold, and clip_fraction, per seed."""
    return _traces_figure(grid or grid_of(tables), "grad_norms", panel, setting)


def _traces_figure(
    g: Grid, kind: str, panel: tuple[Any, ...] | None, setting: dict[str, Any] | None
) -> Figure:
    if setting is not None:
        key = tuple(normalize(setting.get(a)) for a in g.axes)
        return _traces(g, kind, [[key]], setting_label(dict(zip(g.axes, key)), g.axes))
    panel = panel if panel is not None else g.panels[0]
    return _traces(g, kind, _panel_cells(g, tuple(panel)), g.panel_label(tuple(panel)).capitalize())
