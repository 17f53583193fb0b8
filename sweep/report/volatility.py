"""How much the training loss fluctuates, against batch size: one line per learning rate.

Usage: ``volatility_figure(tables)`` -> a Figure, drawn when the grid has at least two batch
sizes (`has_volatility(grid)`). One column of panels per clip value (and extra-axis value); top
row: `volatility`, the epoch-to-epoch jitter of the log training loss after warm-up (mean over
seeds, 95% t interval); bottom row: `step_loss_cv`, the spread of the per-step losses within an
epoch as a share of the epoch's mean loss (median over the epochs after warm-up; mean over seeds,
95% t interval).
"""

from __future__ import annotations

import math
from typing import Any

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from sweep.core.setting import slice_label, value_label
from sweep.core.values import normalize
from sweep.report.figure_base import FONT, Grid, grid_of, log_y, new_figure, titled_legend, with_rc

BATCH = "batch_size"


def has_volatility(g: Grid) -> bool:
    """True when the grid has two or more batch sizes and some setting has a volatility."""
    if BATCH not in g.panel_axes:
        return False
    sizes = {p[g.panel_axes.index(BATCH)] for p in g.panels}
    return len(sizes) >= 2 and any(_value(r, "volatility") is not None for r in g.summary.values())


def _value(row: dict[str, Any], column: str) -> float | None:
    v = normalize(row.get(column))
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _columns(g: Grid) -> list[tuple[Any, tuple[Any, ...]]]:
    """(clip, other panel axes) of each column of panels."""
    others = [a for a in g.panel_axes if a != BATCH]
    extra = list(
        dict.fromkeys(tuple(dict(zip(g.panel_axes, p))[a] for a in others) for p in g.panels)
    )
    return [(clip, e) for e in extra for clip in g.clips]


@with_rc
def volatility_figure(tables: Any, grid: Grid | None = None) -> Figure:
    g = grid or grid_of(tables)
    others = [a for a in g.panel_axes if a != BATCH]
    columns = _columns(g)
    sizes = sorted({p[g.panel_axes.index(BATCH)] for p in g.panels})
    colors = colormaps["viridis"]
    fig = new_figure(min(16.0, 3.4 * len(columns) + 1.0), 5.2)
    axs = fig.subplots(2, len(columns), squeeze=False, sharex=True)
    for c, (clip, extra) in enumerate(columns):
        for r, (column, label) in enumerate(
            (
                ("volatility", "volatility\n(epoch-to-epoch, log loss)"),
                ("step_loss_cv", "step_loss_cv\n(within an epoch)"),
            )
        ):
            ax = axs[r][c]
            for i, lr in enumerate(g.lrs):
                color = colors(i / max(1, len(g.lrs) - 1) * 0.9)
                xs, ys, lo, hi = [], [], [], []
                for bs in sizes:
                    panel = tuple(
                        bs if a == BATCH else dict(zip(others, extra))[a] for a in g.panel_axes
                    )
                    row = g.summary.get(g.key(lr, clip, panel))
                    y = _value(row, column) if row else None
                    if y is None or y <= 0:
                        continue
                    xs.append(float(bs))
                    ys.append(y)
                    lo.append(y - (_value(row, f"{column}_lo") or y))
                    hi.append((_value(row, f"{column}_hi") or y) - y)
                if not xs:
                    continue
                hi = [h if math.isfinite(h) else 0.0 for h in hi]  # one seed: no interval to draw
                ax.errorbar(
                    xs,
                    ys,
                    yerr=[lo, hi],
                    color=color,
                    marker="o",
                    markersize=4,
                    linewidth=1.3,
                    capsize=2.5,
                )
            ax.set_xscale("log", base=2)
            ax.set_xticks([float(s) for s in sizes], [value_label(s) for s in sizes])
            ax.grid(True, alpha=0.3)
            if ax.has_data():
                log_y(ax)
            if r == 0:
                ax.set_title(
                    slice_label({"clip": clip, **dict(zip(others, extra))}) or "all", fontsize=FONT
                )
            if r == 1:
                ax.set_xlabel("batch size")
            if c == 0:
                ax.set_ylabel(label)
    handles = [
        Line2D(
            [],
            [],
            color=colors(i / max(1, len(g.lrs) - 1) * 0.9),
            marker="o",
            markersize=4,
            label=f"lr={value_label(lr)}",
        )
        for i, lr in enumerate(g.lrs)
    ]
    titled_legend(
        fig,
        handles,
        "How much the training loss fluctuates, by batch size and lr: volatility (top; "
        "mean over seeds, 95% interval) and the spread of per-step losses within an epoch (bottom)",
    )
    return fig
