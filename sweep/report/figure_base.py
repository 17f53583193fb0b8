"""What every figure of the report shares: the grid of a study indexed for plotting, the style
(fonts, colours, sizes) and small axis helpers.

`grid_of(tables)` indexes the summary, runs and curves by setting once; the figure modules
(`heatmaps`, `traces`) draw from it. Figures are `matplotlib.figure.Figure` objects built without
pyplot, so nothing is registered globally and a figure is freed as soon as it is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from sweep.analysis.metric import ACCURACY
from sweep.core.setting import slice_label, value_label
from sweep.core.values import normalize

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
COLOR_JUMP = "#ff7f0e"  # the start of a loss jump that never recovered
RC = {
    "font.size": FONT,
    "axes.titlesize": FONT,
    "axes.labelsize": FONT,
    "xtick.labelsize": FONT - 1,
    "ytick.labelsize": FONT - 1,
    "legend.fontsize": FONT - 1,
    "figure.titlesize": FONT + 2,
}


@dataclass(frozen=True)
class FigureFile:
    kind: str  # collapse_rate, mean_best_acc, lr_curves, learning_curves, grad_norms
    name: str  # path relative to the study folder, always with "/": figures/lr_curves.png
    path: Path
    # which panel or setting it shows ("batch size 32"), empty for whole-grid figures
    label: str = ""


@dataclass
class SeedCurves:
    seed: int
    arrays: dict[str, np.ndarray]  # epoch and the EPOCH_COLUMNS
    collapsed: bool = False
    collapse_epoch: int | None = None
    collapse_mode: str = ""
    nonfinite: bool = False
    loss_jump_epoch: int | None = None  # first epoch of a val-loss jump that never recovered


@dataclass
class Grid:
    """The study's grid, indexed for plotting: every lookup by normalized setting key."""

    axes: list[str]
    lrs: list[float]
    clips: list[float | None]
    panel_axes: list[str]  # batch_size and any extra axes: one panel per combination
    panels: list[tuple[Any, ...]]
    summary: dict[tuple[Any, ...], dict[str, Any]]
    seeds: dict[tuple[Any, ...], list[SeedCurves]] = field(default_factory=dict)
    chance: float = math.nan
    loss_label: str = "val_loss (log scale)"
    # how settings are scored and which curve the calls read (a loss study: the loss, lower is
    # better, against `reference`, the loss of knowing nothing)
    score: Any = ACCURACY
    curve: str = "val_acc"
    reference: float = math.nan

    def key(self, lr: float, clip: float | None, panel: tuple[Any, ...]) -> tuple[Any, ...]:
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
    return sorted(dict.fromkeys(normalize(v) for v in values), key=order)


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
        panels=list(
            dict.fromkeys(
                tuple(normalize(r[a]) for a in panel_axes)
                for r in sorted(
                    rows, key=lambda r: tuple(order(normalize(r[a])) for a in panel_axes)
                )
            )
        ),
        summary={tuple(normalize(r[a]) for a in axes): r for r in rows},
        chance=float(tables.chance),
    )
    metric = getattr(tables, "metric", None)
    if metric is not None and metric.is_loss:
        g.score, g.curve = metric.score, metric.curve
        ref = ((getattr(tables, "meta", None) or {}).get("task") or {}).get("chance_loss")
        g.reference = float(ref) if ref is not None else math.nan
    kind = (getattr(tables, "meta", None) or {}).get("task", {}).get("kind")
    g.loss_label = {
        "classification": "val_loss (nats, log)",
        "regression": "val_loss (MSE, log)",
    }.get(kind, "val_loss (log)")
    runs = {}
    for r in tables.runs.to_dict("records"):
        runs[tuple(normalize(r[a]) for a in axes) + (int(r["seed"]),)] = r
    curves = tables.curves
    if len(curves):
        cols = {
            c: curves[c].to_numpy(dtype=float)
            for c in curves.columns
            if c not in axes and c != "seed"
        }
        keys = [curves[a].map(normalize) for a in axes]
        groups = curves.groupby(keys + [curves["seed"]], sort=False, dropna=False).indices
        for gkey, idx in groups.items():
            gkey = tuple(normalize(v) for v in gkey)
            key, seed = gkey[:-1], int(gkey[-1])
            run = runs.get(key + (seed,), {})
            epoch = normalize(run.get("collapse_epoch"))
            jump = normalize(run.get("loss_jump_epoch"))
            g.seeds.setdefault(key, []).append(
                SeedCurves(
                    seed=seed,
                    arrays={c: v[idx] for c, v in cols.items()},
                    collapsed=bool(run.get("collapsed", False)),
                    collapse_epoch=int(epoch) if epoch is not None else None,
                    collapse_mode=str(run.get("collapse_mode") or ""),
                    nonfinite=bool(normalize(run.get("nonfinite")))
                    or run.get("collapse_mode") == "nonfinite",
                    loss_jump_epoch=int(jump) if jump is not None else None,
                )
            )
        for seeds in g.seeds.values():
            seeds.sort(key=lambda s: s.seed)
    return g


def order(v: Any) -> tuple[int, float, str]:
    return (
        (0, 0.0, "")
        if v is None
        else (1, float(v), "")
        if isinstance(v, (int, float))
        else (2, 0.0, str(v))
    )


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    fig.get_layout_engine().set(h_pad=0.04, w_pad=0.04, hspace=0.02, wspace=0.02)
    return fig


def with_rc(build: Callable[..., Figure]) -> Callable[..., Figure]:
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


def log_y(ax: Any) -> None:
    """Log y axis with plain-number labels (1, 2, 5 x 10^k over a short range, else powers of 10).

    Call after plotting: the tick density follows the data range (shared axes share it).
    """
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    subs = (
        (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
        if decades <= 1.0
        else (1.0, 2.0, 5.0)
        if decades <= 2.2
        else (1.0, 3.0)
        if decades <= 3.5
        else (1.0,)
    )
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=7))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())  # minor ticks: clutter, and slow to draw on 64 panels


def lr_ticks(ax: Any, lrs: Sequence[float]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(lrs, [value_label(v) for v in lrs], rotation=45 if len(lrs) > 5 else 0)
    ax.xaxis.set_minor_locator(NullLocator())


# --------------------------------------------------------------------------- heatmaps


def wrap(text: str, width_in: float, size: float) -> str:
    """Wrap a title to the figure width (about 0.55 em per character)."""
    import textwrap

    return "\n".join(textwrap.wrap(text, max(20, int(width_in * 72 / (0.55 * size)))))


def titled_legend(fig: Figure, handles: list[Any], title: str) -> None:
    """The figure's legend above the panels, with the figure title as the legend's title.

    One artist for both, so constrained layout keeps them apart (a suptitle next to an
    "outside" legend overlaps it). Columns are as many as fit the figure width.
    """
    ncols, _ = legend_shape(handles, title, fig.get_figwidth())
    fig.legend(
        handles=handles,
        loc="outside upper center",
        ncols=ncols,
        frameon=False,
        title=wrap(title, fig.get_figwidth(), FONT + 1),
        title_fontsize=FONT + 1,
    )


def text_color(rgba: Sequence[float]) -> str:
    r, g, b = rgba[:3]
    return "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"


# --------------------------------------------------------------------------- LR curves


def legend_shape(handles: list[Any], title: str, width: float) -> tuple[int, float]:
    """(columns, height in inches) of a figure legend with `title`, as `_titled_legend` draws it."""
    size = FONT - 1
    widest = max(len(h.get_label()) for h in handles) * 0.55 * size / 72 + 0.9
    ncols = max(1, min(len(handles), int((width - 0.4) // widest)))
    rows = math.ceil(len(handles) / ncols)
    title_lines = wrap(title, width, FONT + 1).count("\n") + 1
    return ncols, (title_lines * 1.3 * (FONT + 1) + rows * 1.75 * size + 1.2 * size) / 72


def finite(v: Any) -> bool:
    v = normalize(v)
    return isinstance(v, (int, float)) and math.isfinite(v)
