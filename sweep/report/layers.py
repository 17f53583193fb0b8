"""Which layer blew up first: per-group gradient norms of the collapsed seeds of one setting.

Usage: ``layer_grad_norms(tables, setting={...})`` -> a Figure with one panel per collapsed seed
(up to four): the largest gradient norm of each parameter group (embedding, each recurrent layer,
head; or a user's model's top-level modules) per epoch, log scale, in the epochs before and
around the collapse, with the collapse epoch marked. `layer_settings(grid)` says which settings
get one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from sweep.core.setting import setting_label
from sweep.core.values import normalize
from sweep.report.figure_base import (
    COLOR_COLLAPSED,
    COLOR_NONFINITE,
    FONT,
    Grid,
    SeedCurves,
    grid_of,
    log_y,
    new_figure,
    titled_legend,
    with_rc,
)

PREFIX = "grad_norm_max/"
MAX_SEEDS = 4  # panels per figure
MAX_SETTINGS = 24  # figures per report: the settings with the most collapses first
BEFORE, AFTER = 15, 3  # epochs shown around a collapse


def group_names(seeds: list[SeedCurves]) -> list[str]:
    """The parameter groups recorded for these seeds, in their recorded order."""
    names: dict[str, None] = {}
    for s in seeds:
        for column in s.arrays:
            if column.startswith(PREFIX):
                names[column[len(PREFIX) :]] = None
    return list(names)


def layer_settings(g: Grid, limit: int = MAX_SETTINGS) -> list[tuple[Any, ...]]:
    """Settings with a collapsed run and per-group norms, highest collapse rate first."""
    keys = [
        k
        for k, row in g.summary.items()
        if normalize(row.get("n_collapsed")) and group_names(g.seeds.get(k, []))
    ]
    return sorted(keys, key=lambda k: -float(g.summary[k]["collapse_rate"]))[:limit]


@with_rc
def layer_grad_norms(tables: Any, setting: dict[str, Any], grid: Grid | None = None) -> Figure:
    g = grid or grid_of(tables)
    key = tuple(normalize(setting.get(a)) for a in g.axes)
    seeds = g.seeds.get(key, [])
    shown = [s for s in seeds if s.collapsed][:MAX_SEEDS] or seeds[:MAX_SEEDS]
    names = group_names(shown)
    colors = colormaps["tab10"]
    fig = new_figure(min(16.0, 3.6 * max(1, len(shown)) + 0.8), 3.4)
    axs = fig.subplots(1, max(1, len(shown)), squeeze=False)[0]
    for ax, s in zip(axs, shown):
        epochs = s.arrays["epoch"]
        for i, name in enumerate(names):
            values = np.asarray(
                s.arrays.get(PREFIX + name, np.full(len(epochs), np.nan)), dtype=float
            )
            values = np.where(values > 0, values, np.nan)
            ax.plot(
                epochs,
                values,
                color=colors(i % 10),
                linewidth=1.3,
                marker="." if len(epochs) < 3 else None,
            )
        if s.collapse_epoch is not None:
            ax.axvline(s.collapse_epoch, color=COLOR_COLLAPSED, linestyle=":", linewidth=1.3)
            lo, hi = (
                max(0.5, s.collapse_epoch - BEFORE - 0.5),
                min(len(epochs), s.collapse_epoch + AFTER) + 0.5,
            )
            ax.set_xlim(lo, max(hi, lo + 2))
        mode = f"{s.collapse_mode} at epoch {s.collapse_epoch}" if s.collapsed else "no collapse"
        ax.set_title(f"seed {s.seed}: {mode}", fontsize=FONT)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        if np.isfinite(
            [v for n in names for v in np.asarray(s.arrays.get(PREFIX + n, []), dtype=float)]
        ).any():
            log_y(ax)
        if s.nonfinite:
            ax.plot(
                [epochs[-1] if len(epochs) else 1],
                [ax.get_ylim()[1]],
                marker="x",
                color=COLOR_NONFINITE,
                markersize=7,
                mew=1.8,
                clip_on=False,
            )
    axs[0].set_ylabel("grad_norm_max per group\n(L2, before clipping, log)")
    handles = [Line2D([], [], color=colors(i % 10), label=name) for i, name in enumerate(names)]
    handles.append(Line2D([], [], color=COLOR_COLLAPSED, linestyle=":", label="collapse epoch"))
    titled_legend(
        fig,
        handles,
        f"{setting_label(dict(zip(g.axes, key)), g.axes)}: the largest gradient norm of "
        f"each parameter group per epoch, around the collapse",
    )
    return fig
