"""The figures of a study: PNG files under results/<study>/figures/ (matplotlib, Agg).

Usage::

    files = write_figures(tables, study_dir)      # -> [FigureFile(kind, name, path, label), ...]
    fig = lr_curves(tables)                       # every builder returns a matplotlib Figure

Builders create `matplotlib.figure.Figure` objects directly, never through pyplot, so nothing is
registered in pyplot's global figure list and a figure is freed as soon as it is dropped (no
`plt.close` to forget, no "too many open figures" in a long session).

Figures (the kinds; DESIGN.md metric names on every axis):
- `collapse_rate`: heatmap over lr x clip, one panel per batch size (and extra-axis value), k/n.
- `mean_best_acc`: the same layout, annotated with the mean best accuracy.
- `lr_curves`: mean_best_acc with its 95% band and collapse_rate (Wilson interval) vs lr.
- `learning_curves`: every seed's val_acc and val_loss per epoch, collapses marked.
- `grad_norms`: every seed's grad_norm_mean/grad_norm_max per epoch with the clip threshold,
  and clip_fraction.
The last two are a grid (rows lr, columns clip) per batch size, or one file per setting when a
grid would have more than `max_grid_cells` settings.
"""

from __future__ import annotations

import math
import multiprocessing
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator
from matplotlib.transforms import blended_transform_factory

from sweep.config import usable_cores
from sweep.outputs import atomic_write
from sweep.verdicts import CLIP_FRACTION_TOO_HIGH, normalize, setting_label, slice_label, value_label

DPI = 100
FONT = 9  # points: readable at 100% zoom with DPI 100
MAX_GRID_CELLS = 40  # settings per learning-curve grid; more -> one file per setting
# Learning-curve and gradient-norm figures are drawn for at most this many settings (the ones
# that matter most, see `trace_settings`): drawing every seed of thousands of settings would
# take minutes and nobody reads thousands of figures; curves.parquet keeps all of them.
MAX_TRACE_SETTINGS = 96
MAX_WIDTH = 16.0  # inches: heatmap and LR-curve panels wrap into rows beyond this width

COLOR_OK = "#1f77b4"  # a seed that did not collapse
COLOR_COLLAPSED = "#d62728"  # a collapsed seed and its collapse epoch
COLOR_CHANCE = "#7f7f7f"
COLOR_FLOOR = "#9467bd"  # the noise floor: what the best epoch reaches with nothing learned
COLOR_CLIP = "#2ca02c"
COLOR_NONFINITE = "black"
RC = {"font.size": FONT, "axes.titlesize": FONT, "axes.labelsize": FONT, "xtick.labelsize": FONT - 1,
      "ytick.labelsize": FONT - 1, "legend.fontsize": FONT - 1, "figure.titlesize": FONT + 2}


@dataclass(frozen=True)
class FigureFile:
    kind: str  # collapse_rate, mean_best_acc, lr_curves, learning_curves, grad_norms
    name: str  # path relative to the study folder, always with "/": figures/lr_curves.png
    path: Path
    label: str = ""  # which panel or setting it shows ("batch size 32"), empty for whole-grid figures


@dataclass
class SeedCurves:
    seed: int
    arrays: dict[str, np.ndarray]  # epoch and the EPOCH_COLUMNS
    collapsed: bool = False
    collapse_epoch: Optional[int] = None
    collapse_mode: str = ""
    nonfinite: bool = False


@dataclass
class Grid:
    """The study's grid, indexed for plotting: every lookup by normalized setting key."""

    axes: list[str]
    lrs: list[float]
    clips: list[Optional[float]]
    panel_axes: list[str]  # batch_size and any extra axes: one panel per combination
    panels: list[tuple[Any, ...]]
    summary: dict[tuple[Any, ...], dict[str, Any]]
    seeds: dict[tuple[Any, ...], list[SeedCurves]] = field(default_factory=dict)
    chance: float = math.nan
    loss_label: str = "val_loss (log scale)"

    def key(self, lr: float, clip: Optional[float], panel: tuple[Any, ...]) -> tuple[Any, ...]:
        values = {"lr": lr, "clip": clip, **dict(zip(self.panel_axes, panel))}
        return tuple(values[a] for a in self.axes)

    def panel_of(self, key: tuple[Any, ...]) -> tuple[Any, ...]:
        """The panel (batch size and extra-axis values) of a setting key."""
        values = dict(zip(self.axes, key))
        return tuple(values[a] for a in self.panel_axes)

    def panel_label(self, panel: tuple[Any, ...]) -> str:
        return slice_label(dict(zip(self.panel_axes, panel))) or "all settings"


# --------------------------------------------------------------------------- indexing the tables


def _sorted_values(values: Sequence[Any]) -> list[Any]:
    """Distinct axis values in grid order: None (no clipping) first, numbers, then anything else."""
    return sorted(dict.fromkeys(normalize(v) for v in values), key=_order)


def grid_of(tables: Any) -> Grid:
    """Index the summary, runs and curves of `tables` by setting (curves grouped once, here)."""
    axes = list(tables.axes)
    summary = tables.summary
    panel_axes = [a for a in axes if a not in ("lr", "clip")]
    rows = summary.to_dict("records")
    g = Grid(
        axes=axes,
        lrs=[float(v) for v in _sorted_values([r["lr"] for r in rows])],
        clips=_sorted_values([r.get("clip") for r in rows]),
        panel_axes=panel_axes,
        panels=list(dict.fromkeys(tuple(normalize(r[a]) for a in panel_axes) for r in
                                  sorted(rows, key=lambda r: tuple(_order(normalize(r[a])) for a in panel_axes)))),
        summary={tuple(normalize(r[a]) for a in axes): r for r in rows},
        chance=float(tables.chance),
    )
    kind = (getattr(tables, "meta", None) or {}).get("task", {}).get("kind")
    g.loss_label = {"classification": "val_loss (nats, log)", "regression": "val_loss (MSE, log)"}.get(kind, "val_loss (log)")
    runs = {}
    for r in tables.runs.to_dict("records"):
        runs[tuple(normalize(r[a]) for a in axes) + (int(r["seed"]),)] = r
    curves = tables.curves
    if len(curves):
        cols = {c: curves[c].to_numpy(dtype=float) for c in curves.columns if c not in axes and c != "seed"}
        keys = [curves[a].map(normalize) for a in axes]
        groups = curves.groupby(keys + [curves["seed"]], sort=False, dropna=False).indices
        for gkey, idx in groups.items():
            gkey = tuple(normalize(v) for v in gkey)
            key, seed = gkey[:-1], int(gkey[-1])
            run = runs.get(key + (seed,), {})
            epoch = normalize(run.get("collapse_epoch"))
            g.seeds.setdefault(key, []).append(SeedCurves(
                seed=seed,
                arrays={c: v[idx] for c, v in cols.items()},
                collapsed=bool(run.get("collapsed", False)),
                collapse_epoch=int(epoch) if epoch is not None else None,
                collapse_mode=str(run.get("collapse_mode") or ""),
                nonfinite=bool(normalize(run.get("nonfinite"))) or run.get("collapse_mode") == "nonfinite",
            ))
        for seeds in g.seeds.values():
            seeds.sort(key=lambda s: s.seed)
    return g


def _order(v: Any) -> tuple[int, float, str]:
    return (0, 0.0, "") if v is None else (1, float(v), "") if isinstance(v, (int, float)) else (2, 0.0, str(v))


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    fig.get_layout_engine().set(h_pad=0.04, w_pad=0.04, hspace=0.02, wspace=0.02)
    return fig


def _with_rc(build: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build under the module's font sizes without touching the caller's rcParams for good."""
    import functools

    import matplotlib as mpl

    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with mpl.rc_context(RC):
            fig = build(*args, **kwargs)
        # Ticks are created lazily at draw time, after the rc context: fix their size now.
        for ax in fig.axes:
            ax.tick_params(labelsize=FONT - 1)
        return fig

    return wrapper


def _log_y(ax: Any) -> None:
    """Log y axis with plain-number labels (1, 2, 5 x 10^k over a short range, else powers of 10).

    Call after plotting: the tick density follows the data range (shared axes share it).
    """
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    subs = ((1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if decades <= 1.0 else (1.0, 2.0, 5.0) if decades <= 2.2
            else (1.0, 3.0) if decades <= 3.5 else (1.0,))
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=7))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())  # minor ticks: clutter, and slow to draw on 64 panels


def _lr_ticks(ax: Any, lrs: Sequence[float]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(lrs, [value_label(v) for v in lrs], rotation=45 if len(lrs) > 5 else 0)
    ax.xaxis.set_minor_locator(NullLocator())


# --------------------------------------------------------------------------- heatmaps


@_with_rc
def collapse_heatmap(tables: Any) -> Figure:
    """collapse_rate over lr x clip, one panel per batch size (and extra-axis value), cells k/n."""
    return _heatmap(grid_of(tables), "collapse_rate")


@_with_rc
def accuracy_heatmap(tables: Any) -> Figure:
    """mean_best_acc over lr x clip, one panel per batch size (and extra-axis value)."""
    return _heatmap(grid_of(tables), "mean_best_acc")


def _heatmap(g: Grid, metric: str) -> Figure:
    nl, nc = len(g.lrs), len(g.clips)
    rotate = nl > 5 or any(len(value_label(v)) > 5 for v in g.lrs)
    panel_w = max(2.8, 0.62 * nl + 1.2)
    panel_h = max(2.0, 0.42 * nc + (1.35 if rotate else 1.1))
    ncols = max(1, min(len(g.panels), int(MAX_WIDTH // panel_w)))
    nrows = math.ceil(len(g.panels) / ncols)
    fig = _figure(ncols * panel_w + 1.3, nrows * panel_h + 0.6)
    axs = fig.subplots(nrows, ncols, squeeze=False)
    values = [r[metric] for r in g.summary.values() if _finite(r[metric])]
    if metric == "collapse_rate":
        cmap, norm = colormaps["Reds"], Normalize(0.0, 1.0)
        cbar_label, title = "collapse_rate\n(collapsed runs / runs)", "collapse_rate per setting (cells: collapsed/runs)"
    else:
        lo = min([g.chance] + values) if _finite(g.chance) else min(values, default=0.0)
        hi = max(values, default=1.0)
        cmap, norm = colormaps["viridis"], Normalize(lo, hi if hi > lo else lo + 0.01)
        cbar_label, title = "mean_best_acc\n(fraction correct)", "mean_best_acc per setting (mean over seeds of the best val_acc)"
    cmap = cmap.with_extremes(bad="#e8e8e8")
    image = None
    for i, panel in enumerate(g.panels):
        ax = axs[i // ncols][i % ncols]
        data = np.full((nc, nl), np.nan)
        for ci, clip in enumerate(g.clips):
            for li, lr in enumerate(g.lrs):
                row = g.summary.get(g.key(lr, clip, panel))
                if row is not None and _finite(row[metric]):
                    data[ci, li] = row[metric]
        image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
        for ci, clip in enumerate(g.clips):
            for li, lr in enumerate(g.lrs):
                row = g.summary.get(g.key(lr, clip, panel))
                text = "–" if row is None else (
                    f"{int(row['n_collapsed'])}/{int(row['n_runs'])}" if metric == "collapse_rate"
                    else f"{row[metric]:.3f}" if _finite(row[metric]) else "–")
                v = data[ci, li]
                ax.text(li, ci, text, ha="center", va="center", fontsize=FONT - 1,
                        color=_text_color(cmap(norm(v))) if np.isfinite(v) else "black")
        ax.set_xticks(range(nl), [value_label(v) for v in g.lrs], rotation=45 if rotate else 0)
        ax.set_yticks(range(nc), [value_label(v) for v in g.clips])
        ax.set_xlabel("lr")
        ax.set_ylabel("clip (max grad norm)")
        ax.set_title(g.panel_label(panel))
        ax.tick_params(length=0)
    for j in range(len(g.panels), nrows * ncols):
        axs[j // ncols][j % ncols].remove()
    used = [axs[i // ncols][i % ncols] for i in range(len(g.panels))]
    fig.colorbar(image, ax=used, label=cbar_label, shrink=0.9 if nrows > 1 else 1.0, aspect=max(8, 12 * nrows))
    fig.suptitle(_wrap(title, fig.get_figwidth(), FONT + 2))
    return fig


def _wrap(text: str, width_in: float, size: float) -> str:
    """Wrap a title to the figure width (about 0.55 em per character)."""
    import textwrap

    return "\n".join(textwrap.wrap(text, max(20, int(width_in * 72 / (0.55 * size)))))


def _titled_legend(fig: Figure, handles: list[Any], title: str) -> None:
    """The figure's legend above the panels, with the figure title as the legend's title.

    One artist for both, so constrained layout keeps them apart (a suptitle next to an
    "outside" legend overlaps it). Columns are as many as fit the figure width.
    """
    ncols, _ = _legend_shape(handles, title, fig.get_figwidth())
    fig.legend(handles=handles, loc="outside upper center", ncols=ncols, frameon=False,
               title=_wrap(title, fig.get_figwidth(), FONT + 1), title_fontsize=FONT + 1)


def _text_color(rgba: Sequence[float]) -> str:
    r, g, b = rgba[:3]
    return "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"


# --------------------------------------------------------------------------- LR curves


@_with_rc
def lr_curves(tables: Any) -> Figure:
    """mean_best_acc (95% band) and collapse_rate (Wilson interval) vs lr, one line per clip.

    One column per batch size (and extra-axis value); the collapse-rate panel sits beneath the
    accuracy panel on the same x axis.
    """
    g = grid_of(tables)
    ncols = max(1, min(len(g.panels), 4))
    blocks = math.ceil(len(g.panels) / ncols)
    fig = _figure(ncols * 3.9 + 0.7, blocks * 4.4 + 0.9)
    gs = fig.add_gridspec(2 * blocks, ncols, height_ratios=[2.0, 1.2] * blocks)
    colors = colormaps["tab10"]
    span = math.log10(max(g.lrs) / min(g.lrs)) if len(g.lrs) > 1 else 1.0
    x0 = acc0 = rate0 = None
    for i, panel in enumerate(g.panels):
        b, c = divmod(i, ncols)
        ax_acc = fig.add_subplot(gs[2 * b, c], sharex=x0, sharey=acc0)
        ax_rate = fig.add_subplot(gs[2 * b + 1, c], sharex=ax_acc, sharey=rate0)
        x0, acc0, rate0 = x0 or ax_acc, acc0 or ax_acc, rate0 or ax_rate
        for ci, clip in enumerate(g.clips):
            rows = [(lr, g.summary[g.key(lr, clip, panel)]) for lr in g.lrs if g.key(lr, clip, panel) in g.summary]
            if not rows:
                continue
            color, label = colors(ci % 10), f"clip {value_label(clip)}"
            xs = np.array([lr for lr, _ in rows])
            mean = np.array([r["mean_best_acc"] for _, r in rows], dtype=float)
            ax_acc.fill_between(xs, [r["mean_best_acc_lo"] for _, r in rows], [r["mean_best_acc_hi"] for _, r in rows],
                                color=color, alpha=0.15, linewidth=0)
            ax_acc.plot(xs, mean, "o-", color=color, label=label, markersize=4)
            # Dodge the clip values sideways a little so equal rates (often 0) stay distinguishable.
            dx = 10 ** ((ci - (len(g.clips) - 1) / 2) * 0.012 * span)
            rate = np.array([r["collapse_rate"] for _, r in rows], dtype=float)
            err = np.array([[r["collapse_rate"] - r["collapse_rate_lo"] for _, r in rows],
                            [r["collapse_rate_hi"] - r["collapse_rate"] for _, r in rows]], dtype=float)
            ax_rate.errorbar(xs * dx, rate, yerr=np.clip(err, 0, None), fmt="o-", color=color, markersize=4,
                             capsize=2, linewidth=1, elinewidth=0.8)
        if _finite(g.chance):
            ax_acc.axhline(g.chance, color=COLOR_CHANCE, linestyle="--", linewidth=1, label="chance")
        floors = [normalize(r.get("noise_floor")) for k, r in g.summary.items() if g.panel_of(k) == panel]
        floors = [f for f in floors if f is not None and math.isfinite(f) and f <= 1.0]
        if floors:
            ax_acc.axhline(max(floors), color=COLOR_FLOOR, linestyle="-.", linewidth=1.0)
        ax_acc.set_title(g.panel_label(panel))
        _lr_ticks(ax_rate, g.lrs)
        ax_acc.tick_params(labelbottom=False)
        ax_rate.set_xlabel("lr (log scale)")
        ax_rate.set_ylim(-0.05, 1.05)
        ax_rate.set_yticks([0, 0.5, 1])
        if c == 0:
            ax_acc.set_ylabel("mean_best_acc (fraction)")
            ax_rate.set_ylabel("collapse_rate\n(fraction of seeds)")
        else:
            ax_acc.tick_params(labelleft=False)
            ax_rate.tick_params(labelleft=False)
        for ax in (ax_acc, ax_rate):
            ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=colors(ci % 10), marker="o", markersize=4, label=f"clip {value_label(c)}")
               for ci, c in enumerate(g.clips)]
    handles += [Patch(color="#999999", alpha=0.3, label="95% interval"),
                Line2D([], [], color=COLOR_CHANCE, linestyle="--", label="chance"),
                Line2D([], [], color=COLOR_FLOOR, linestyle="-.", label="noise floor of the best epoch")]
    _titled_legend(fig, handles, "mean_best_acc (band: 95% t interval) and collapse_rate "
                                 "(bars: 95% Wilson interval) vs lr")
    return fig


# --------------------------------------------------------------------------- per-setting traces


def _positive(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=float).copy()
    v[~(v > 0)] = np.nan  # a log axis cannot show 0 or NaN; gaps rather than warnings
    return v


def _mark_end(ax: Any, epochs: np.ndarray, values: np.ndarray) -> None:
    """An x at the last epoch of a run that went non-finite, at its last finite value."""
    finite = np.flatnonzero(np.isfinite(values))
    x = epochs[-1] if len(epochs) else 1
    if len(finite):
        ax.plot([x], [values[finite[-1]]], marker="x", color=COLOR_NONFINITE, markersize=7, mew=1.8, zorder=5)
    else:
        ax.plot([x], [0.5], marker="x", color=COLOR_NONFINITE, markersize=7, mew=1.8, zorder=5,
                transform=blended_transform_factory(ax.transData, ax.transAxes))


def _mark_collapse(axes: Sequence[Any], s: SeedCurves) -> None:
    if s.collapsed and s.collapse_epoch is not None:
        for ax in axes:
            ax.axvline(s.collapse_epoch, color=COLOR_COLLAPSED, linestyle=":", linewidth=1.2, zorder=1)


def _draw_learning(ax_acc: Any, ax_loss: Any, seeds: Sequence[SeedCurves], g: Grid, clip: Any,
                   floor: float = math.nan) -> None:
    for s in sorted(seeds, key=lambda s: s.collapsed):  # collapsed seeds on top
        color, z = (COLOR_COLLAPSED, 3) if s.collapsed else (COLOR_OK, 2)
        e = s.arrays["epoch"]
        marker = "." if len(e) < 2 else None
        ax_acc.plot(e, s.arrays["val_acc"], color=color, linewidth=1.1, alpha=0.85, zorder=z, marker=marker)
        loss = _positive(s.arrays["val_loss"])
        ax_loss.plot(e, loss, color=color, linewidth=1.1, alpha=0.85, zorder=z, marker=marker)
        _mark_collapse((ax_acc, ax_loss), s)
        if s.nonfinite:
            _mark_end(ax_acc, e, s.arrays["val_acc"])
            _mark_end(ax_loss, e, loss)
    if _finite(g.chance):
        ax_acc.axhline(g.chance, color=COLOR_CHANCE, linestyle="--", linewidth=1, zorder=1)
    if _finite(floor) and floor <= 1.0:
        ax_acc.axhline(floor, color=COLOR_FLOOR, linestyle="-.", linewidth=1.0, zorder=1)


def _draw_grad(ax_norm: Any, ax_frac: Any, seeds: Sequence[SeedCurves], g: Grid, clip: Any,
               floor: float = math.nan) -> None:
    for s in sorted(seeds, key=lambda s: s.collapsed):
        color, z = (COLOR_COLLAPSED, 3) if s.collapsed else (COLOR_OK, 2)
        e = s.arrays["epoch"]
        marker = "." if len(e) < 2 else None
        ax_norm.plot(e, _positive(s.arrays["grad_norm_mean"]), color=color, linewidth=1.1, alpha=0.85, zorder=z, marker=marker)
        gmax = _positive(s.arrays["grad_norm_max"])
        ax_norm.plot(e, gmax, color=color, linewidth=0.8, linestyle="--", alpha=0.7, zorder=z, marker=marker)
        ax_frac.plot(e, s.arrays["clip_fraction"], color=color, linewidth=1.1, alpha=0.85, zorder=z, marker=marker)
        _mark_collapse((ax_norm, ax_frac), s)
        if s.nonfinite:
            _mark_end(ax_norm, e, gmax)
    if clip is not None:
        ax_norm.axhline(float(clip), color=COLOR_CLIP, linestyle="-.", linewidth=1.4, zorder=4)
        ax_frac.axhline(CLIP_FRACTION_TOO_HIGH, color=COLOR_CHANCE, linestyle=":", linewidth=1, zorder=1)
    else:
        ax_frac.text(0.5, 0.55, "no clipping", transform=ax_frac.transAxes, ha="center", va="center",
                     color=COLOR_CHANCE, fontsize=FONT - 1)


def _seed_handles(kind: str) -> list[Any]:
    if kind == "learning_curves":
        return [Line2D([], [], color=COLOR_OK, label="seed (no collapse)"),
                Line2D([], [], color=COLOR_COLLAPSED, label="collapsed seed"),
                Line2D([], [], color=COLOR_COLLAPSED, linestyle=":", label="collapse epoch"),
                Line2D([], [], color=COLOR_NONFINITE, marker="x", linestyle="", mew=1.8, label="non-finite (run stopped)"),
                Line2D([], [], color=COLOR_CHANCE, linestyle="--", label="chance"),
                Line2D([], [], color=COLOR_FLOOR, linestyle="-.", label="noise floor (best epoch, nothing learned)")]
    return [Line2D([], [], color=COLOR_OK, label="grad_norm_mean"),
            Line2D([], [], color=COLOR_OK, linestyle="--", linewidth=0.8, label="grad_norm_max"),
            Line2D([], [], color=COLOR_COLLAPSED, label="collapsed seed"),
            Line2D([], [], color=COLOR_COLLAPSED, linestyle=":", label="collapse epoch"),
            Line2D([], [], color=COLOR_NONFINITE, marker="x", linestyle="", mew=1.8, label="non-finite"),
            Line2D([], [], color=COLOR_CLIP, linestyle="-.", label="clip threshold"),
            Line2D([], [], color=COLOR_CHANCE, linestyle=":", label="clip_fraction 0.5")]


_TRACES = {
    # kind: (draw, top y label, bottom y label, log top, log bottom, suptitle)
    "learning_curves": (_draw_learning, "val_acc (fraction)", None, False, True,
                        "val_acc and val_loss of every seed per epoch"),
    "grad_norms": (_draw_grad, "grad_norm (L2, log)", "clip_fraction\n(of steps)", True, False,
                   "gradient norm before clipping and clip_fraction of every seed per epoch"),
}


# Trace grids are laid out by hand (sizes in inches): with 64 panels, constrained layout and
# shared axes make saving a figure several times slower (every panel's tight box, every sibling's
# limits), while this regular grid needs only fixed margins. Limits are made equal explicitly.
PANEL_W, PANEL_H = 3.1, 1.15  # one axes
PAIR_GAP, TITLE_GAP, COL_GAP = 0.08, 0.36, 0.18  # between the two panels of a setting, above a title, columns
LEFT, RIGHT, BOTTOM = 0.95, 0.2, 0.55


def _traces(g: Grid, kind: str, cells: list[list[Optional[tuple[Any, ...]]]], title: str) -> Figure:
    """A grid of settings (rows x columns of setting keys, None = not run), two panels each."""
    draw, top_label, bottom_label, log_top, log_bottom, what = _TRACES[kind]
    bottom_label = bottom_label or g.loss_label
    nrows, ncols = len(cells), len(cells[0])
    # A figure of one setting gets roomier panels (it is looked at alone).
    panel_w, panel_h = (PANEL_W, PANEL_H) if nrows * ncols > 1 else (5.5, 1.7)
    width = LEFT + ncols * panel_w + (ncols - 1) * COL_GAP + RIGHT
    handles = _seed_handles(kind)
    legend_cols, legend_h = _legend_shape(handles, f"{title}: {what}", width)
    top_margin = legend_h + TITLE_GAP
    cell_h = 2 * panel_h + PAIR_GAP
    height = top_margin + nrows * cell_h + (nrows - 1) * TITLE_GAP + BOTTOM
    fig = Figure(figsize=(width, height), dpi=DPI)
    outer = fig.add_gridspec(nrows, ncols, left=LEFT / width, right=1 - RIGHT / width, bottom=BOTTOM / height,
                             top=1 - top_margin / height, hspace=TITLE_GAP / cell_h, wspace=COL_GAP / panel_w)
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
                draw(top, bottom, g.seeds.get(key, []), g, clip, math.nan if floor is None else float(floor))
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
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.05 / height), ncols=legend_cols,
               frameon=False, title=_wrap(f"{title}: {what}", width, FONT + 1), title_fontsize=FONT + 1)
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
        _log_y(ax)


def _legend_shape(handles: list[Any], title: str, width: float) -> tuple[int, float]:
    """(columns, height in inches) of a figure legend with `title`, as `_titled_legend` draws it."""
    size = FONT - 1
    widest = max(len(h.get_label()) for h in handles) * 0.55 * size / 72 + 0.9
    ncols = max(1, min(len(handles), int((width - 0.4) // widest)))
    rows = math.ceil(len(handles) / ncols)
    title_lines = _wrap(title, width, FONT + 1).count("\n") + 1
    return ncols, (title_lines * 1.3 * (FONT + 1) + rows * 1.75 * size + 1.2 * size) / 72


def _short_label(key: tuple[Any, ...], g: Grid) -> str:
    """lr and clip of a setting (the panel's other axes are in the figure title)."""
    values = dict(zip(g.axes, key))
    return f"lr={value_label(values['lr'])}, clip {value_label(values.get('clip'))}"


def _panel_cells(g: Grid, panel: tuple[Any, ...]) -> list[list[Optional[tuple[Any, ...]]]]:
    return [[g.key(lr, clip, panel) if g.key(lr, clip, panel) in g.summary else None for clip in g.clips]
            for lr in g.lrs]


@_with_rc
def learning_curves(tables: Any, panel: Optional[tuple[Any, ...]] = None, setting: Optional[dict[str, Any]] = None,
                    grid: Optional[Grid] = None) -> Figure:
    """val_acc and val_loss of every seed vs epoch: the grid of one panel (rows lr, columns clip),
    or one setting when `setting` is given. `panel` defaults to the first batch size."""
    return _traces_figure(grid or grid_of(tables), "learning_curves", panel, setting)


@_with_rc
def grad_norm_traces(tables: Any, panel: Optional[tuple[Any, ...]] = None, setting: Optional[dict[str, Any]] = None,
                     grid: Optional[Grid] = None) -> Figure:
    """grad_norm_mean/grad_norm_max (log) with the clip threshold, and clip_fraction, per seed."""
    return _traces_figure(grid or grid_of(tables), "grad_norms", panel, setting)


def _traces_figure(g: Grid, kind: str, panel: Optional[tuple[Any, ...]], setting: Optional[dict[str, Any]]) -> Figure:
    if setting is not None:
        key = tuple(normalize(setting.get(a)) for a in g.axes)
        return _traces(g, kind, [[key]], setting_label(dict(zip(g.axes, key)), g.axes))
    panel = panel if panel is not None else g.panels[0]
    return _traces(g, kind, _panel_cells(g, tuple(panel)), g.panel_label(tuple(panel)).capitalize())


# --------------------------------------------------------------------------- writing


def _slug(values: dict[str, Any]) -> str:
    text = "_".join(f"{k}-{value_label(v)}" for k, v in values.items())
    return re.sub(r"[^A-Za-z0-9.\-_]+", "_", text) or "all"


def figure_plan(tables: Any, max_grid_cells: int = MAX_GRID_CELLS) -> list[tuple[str, str, str, Callable[[], Figure]]]:
    """(kind, relative name, label, builder) of every figure of `tables`, in report order."""
    if not len(tables.summary):
        return []
    g = grid_of(tables)
    plan: list[tuple[str, str, str, Callable[[], Figure]]] = [
        ("collapse_rate", "figures/collapse_rate.png", "", lambda: collapse_heatmap(tables)),
        ("mean_best_acc", "figures/mean_best_acc.png", "", lambda: accuracy_heatmap(tables)),
        ("lr_curves", "figures/lr_curves.png", "", lambda: lr_curves(tables)),
    ]
    drawn = trace_settings(g)
    per_setting = len(drawn) < len(g.summary) or len(g.lrs) * len(g.clips) > max_grid_cells
    used: set[str] = set()
    for kind, build in (("learning_curves", learning_curves), ("grad_norms", grad_norm_traces)):
        for panel in g.panels:
            if per_setting:
                for lr in g.lrs:
                    for clip in g.clips:
                        key = g.key(lr, clip, panel)
                        if key not in drawn:
                            continue
                        setting = dict(zip(g.axes, key))
                        name = _unique(f"figures/{kind}/{_slug(setting)}.png", used)
                        plan.append((kind, name, setting_label(setting, g.axes),
                                     lambda b=build, s=setting: b(tables, setting=s, grid=g)))
            else:
                slug = _slug(dict(zip(g.panel_axes, panel)))
                name = _unique(f"figures/{kind}_{slug}.png", used)
                plan.append((kind, name, g.panel_label(panel), lambda b=build, p=panel: b(tables, panel=p, grid=g)))
    return plan


def trace_settings(g: Grid, limit: int = MAX_TRACE_SETTINGS) -> set[tuple[Any, ...]]:
    """The settings whose per-seed traces are drawn: all of them when there are at most `limit`;
    otherwise the recommended setting (best without collapse), then the settings with collapsed
    runs (highest collapse rate first), then the most accurate others."""
    keys = list(g.summary)
    if len(keys) <= limit:
        return set(keys)
    row = g.summary

    def acc(k: tuple[Any, ...]) -> float:
        v = normalize(row[k].get("mean_best_acc"))
        return float(v) if v is not None else -1.0

    stable = [k for k in keys if not row[k].get("n_collapsed")]
    collapsed = sorted((k for k in keys if row[k].get("n_collapsed")),
                       key=lambda k: (-float(row[k]["collapse_rate"]), -acc(k)))
    ranked = sorted(stable, key=acc, reverse=True)[:1] + collapsed + sorted(stable, key=acc, reverse=True)[1:]
    return set(ranked[:limit])


def _unique(name: str, used: set[str]) -> str:
    base, n = name, 2
    while name in used:
        name = base.replace(".png", f"-{n}.png")
        n += 1
    used.add(name)
    return name


def save_figure(fig: Figure, path: Path) -> Path:
    """Write `fig` as PNG atomically (temp file + rename)."""
    return atomic_write(Path(path), lambda p: fig.savefig(p, format="png", dpi=DPI))


def write_figures(tables: Any, study_dir: str | Path, max_grid_cells: int = MAX_GRID_CELLS) -> list[FigureFile]:
    """Write every figure under study_dir/figures/ and remove PNGs left there by an earlier layout.

    Many figures are drawn by a pool of forked processes (one per core): rendering is the slow
    part of a large report and every figure is independent.
    """
    study_dir = Path(study_dir)
    plan = figure_plan(tables, max_grid_cells)
    paths = [study_dir / name for _, name, _, _ in plan]
    workers = min(len(plan) // 2, usable_cores())
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        global _PLAN
        _PLAN = list(zip(plan, paths))
        try:
            ctx = multiprocessing.get_context("fork")
            pool = ctx.Pool(workers, initializer=_default_signals)
            try:
                pool.map(_draw, range(len(plan)), chunksize=max(1, len(plan) // (workers * 4)))
                pool.close()
            except BaseException:
                pool.terminate()
                raise
            finally:
                pool.join()
        finally:
            _PLAN = []
    else:
        for (_, _, _, build), path in zip(plan, paths):
            save_figure(build(), path)
    files = [FigureFile(kind, name, path, label) for (kind, name, label, _), path in zip(plan, paths)]
    written = {f.path.resolve() for f in files}
    folder = study_dir / "figures"
    if folder.is_dir():
        for old in folder.rglob("*.png"):
            if old.resolve() not in written:
                old.unlink(missing_ok=True)  # from an earlier grid or layout; report.html no longer shows it
    return files


_PLAN: list[Any] = []  # the figure plan, inherited by forked drawing processes


def _default_signals() -> None:
    """Forked drawing processes must not inherit the launcher's SIGINT/SIGTERM handlers (which
    only forward the signal): the pool stops them with SIGTERM."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _draw(i: int) -> None:
    (_, _, _, build), path = _PLAN[i]
    save_figure(build(), path)


def _finite(v: Any) -> bool:
    v = normalize(v)
    return isinstance(v, (int, float)) and math.isfinite(v)
