"""Whole-grid figures: collapse-rate and accuracy heatmaps over lr x clip, and the LR curves.

Usage: ``collapse_heatmap(tables)``, ``accuracy_heatmap(tables)``, ``lr_curves(tables)``; each
returns a matplotlib Figure with one panel per batch size (and extra-axis value).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from sweep.analysis.boundary import fit_boundary_counts, slice_counts
from sweep.core.setting import value_label
from sweep.core.values import normalize
from sweep.report.figure_base import (
    COLOR_CHANCE,
    COLOR_FLOOR,
    FONT,
    MAX_WIDTH,
    Grid,
    finite,
    grid_of,
    lr_ticks,
    new_figure,
    text_color,
    titled_legend,
    with_rc,
    wrap,
)


@with_rc
def collapse_heatmap(tables: Any) -> Figure:
    """collapse_rate over lr x clip, one panel per batch size (and extra-axis value), cells k/n."""
    return _heatmap(grid_of(tables), "collapse_rate")


@with_rc
def accuracy_heatmap(tables: Any) -> Figure:
    """mean_best_acc over lr x clip, one panel per batch size (and extra-axis value)."""
    g = grid_of(tables)
    return _heatmap(g, g.score.mean)


def _heatmap(g: Grid, metric: str) -> Figure:
    nl, nc = len(g.lrs), len(g.clips)
    rotate = nl > 5 or any(len(value_label(v)) > 5 for v in g.lrs)
    panel_w = max(2.8, 0.62 * nl + 1.2)
    panel_h = max(2.0, 0.42 * nc + (1.35 if rotate else 1.1))
    ncols = max(1, min(len(g.panels), int(MAX_WIDTH // panel_w)))
    nrows = math.ceil(len(g.panels) / ncols)
    fig = new_figure(ncols * panel_w + 1.3, nrows * panel_h + 0.6)
    axs = fig.subplots(nrows, ncols, squeeze=False)
    values = [r[metric] for r in g.summary.values() if finite(r[metric])]
    if metric == "collapse_rate":
        cmap, norm = colormaps["Reds"], Normalize(0.0, 1.0)
        cbar_label, title = (
            "collapse_rate\n(collapsed runs / runs)",
            "collapse_rate per setting (cells: collapsed/runs)",
        )
    elif g.score.lower_is_better:  # a loss: low is good, so the colours run the other way
        lo = min(values, default=0.0)
        hi = max(values, default=1.0)
        if finite(g.reference) and lo < g.reference < hi:
            hi = g.reference  # worse than knowing nothing: one colour
        cmap, norm = colormaps["viridis_r"], Normalize(lo, hi if hi > lo else lo + 0.01)
        cbar_label, title = (
            f"{metric}\n(lower is better)",
            f"{metric} per setting (mean over seeds of the lowest {g.curve})",
        )
    else:
        lo = min([g.chance] + values) if finite(g.chance) else min(values, default=0.0)
        hi = max(values, default=1.0)
        cmap, norm = colormaps["viridis"], Normalize(lo, hi if hi > lo else lo + 0.01)
        cbar_label, title = (
            "mean_best_acc\n(fraction correct)",
            "mean_best_acc per setting (mean over seeds of the best val_acc)",
        )
    cmap = cmap.with_extremes(bad="#e8e8e8")
    image = None
    for i, panel in enumerate(g.panels):
        ax = axs[i // ncols][i % ncols]
        data = np.full((nc, nl), np.nan)
        for ci, clip in enumerate(g.clips):
            for li, lr in enumerate(g.lrs):
                row = g.summary.get(g.key(lr, clip, panel))
                if row is not None and finite(row[metric]):
                    data[ci, li] = row[metric]
        image = ax.imshow(
            np.ma.masked_invalid(data), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest"
        )
        for ci, clip in enumerate(g.clips):
            for li, lr in enumerate(g.lrs):
                row = g.summary.get(g.key(lr, clip, panel))
                text = (
                    "–"
                    if row is None
                    else (
                        f"{int(row['n_collapsed'])}/{int(row['n_runs'])}"
                        if metric == "collapse_rate"
                        else f"{row[metric]:.3f}"
                        if finite(row[metric])
                        else "–"
                    )
                )
                v = data[ci, li]
                ax.text(
                    li,
                    ci,
                    text,
                    ha="center",
                    va="center",
                    fontsize=FONT - 1,
                    color=text_color(cmap(norm(v))) if np.isfinite(v) else "black",
                )
        ax.set_xticks(range(nl), [value_label(v) for v in g.lrs], rotation=45 if rotate else 0)
        ax.set_yticks(range(nc), [value_label(v) for v in g.clips])
        ax.set_xlabel("lr")
        ax.set_ylabel("clip (max grad norm)")
        ax.set_title(g.panel_label(panel))
        ax.tick_params(length=0)
    for j in range(len(g.panels), nrows * ncols):
        axs[j // ncols][j % ncols].remove()
    used = [axs[i // ncols][i % ncols] for i in range(len(g.panels))]
    fig.colorbar(
        image,
        ax=used,
        label=cbar_label,
        shrink=0.9 if nrows > 1 else 1.0,
        aspect=max(8, 12 * nrows),
    )
    fig.suptitle(wrap(title, fig.get_figwidth(), FONT + 2))
    return fig


@with_rc
def lr_curves(tables: Any) -> Figure:
    """mean_best_acc (95% band) and collapse_rate (Wilson interval) vs lr, one line per clip.

    One column per batch size (and extra-axis value); the collapse-rate panel sits beneath the
    accuracy panel on the same x axis.
    """
    g = grid_of(tables)
    ncols = max(1, min(len(g.panels), 4))
    blocks = math.ceil(len(g.panels) / ncols)
    fig = new_figure(ncols * 3.9 + 0.7, blocks * 4.4 + 0.9)
    gs = fig.add_gridspec(2 * blocks, ncols, height_ratios=[2.0, 1.2] * blocks)
    colors = colormaps["tab10"]
    span = math.log10(max(g.lrs) / min(g.lrs)) if len(g.lrs) > 1 else 1.0
    x0 = acc0 = rate0 = None
    past_edge = False  # did any slice count never-learned runs past its learning range as failed?
    for i, panel in enumerate(g.panels):
        b, c = divmod(i, ncols)
        ax_acc = fig.add_subplot(gs[2 * b, c], sharex=x0, sharey=acc0)
        ax_rate = fig.add_subplot(gs[2 * b + 1, c], sharex=ax_acc, sharey=rate0)
        x0, acc0, rate0 = x0 or ax_acc, acc0 or ax_acc, rate0 or ax_rate
        for ci, clip in enumerate(g.clips):
            rows = [
                (lr, g.summary[g.key(lr, clip, panel)])
                for lr in g.lrs
                if g.key(lr, clip, panel) in g.summary
            ]
            if not rows:
                continue
            color, label = colors(ci % 10), f"clip {value_label(clip)}"
            xs = np.array([lr for lr, _ in rows])
            sc = g.score
            mean = np.array([r[sc.mean] for _, r in rows], dtype=float)
            ax_acc.fill_between(
                xs,
                np.array([r[sc.lo] for _, r in rows], dtype=float),
                np.array([r[sc.hi] for _, r in rows], dtype=float),
                color=color,
                alpha=0.15,
                linewidth=0,
            )
            ax_acc.plot(xs, mean, "o-", color=color, label=label, markersize=4)
            # Dodge the clip values sideways a little so equal rates (often 0) stay distinguishable.
            dx = 10 ** ((ci - (len(g.clips) - 1) / 2) * 0.012 * span)
            rate = np.array([r["collapse_rate"] for _, r in rows], dtype=float)
            err = np.array(
                [
                    [r["collapse_rate"] - r["collapse_rate_lo"] for _, r in rows],
                    [r["collapse_rate_hi"] - r["collapse_rate"] for _, r in rows],
                ],
                dtype=float,
            )
            ax_rate.errorbar(
                xs * dx,
                rate,
                yerr=np.clip(err, 0, None),
                fmt="o",
                color=color,
                markersize=4,
                capsize=2,
                linewidth=1,
                elinewidth=0.8,
            )
            past_edge |= _draw_boundary(ax_rate, [r for _, r in rows], color)
        if g.score.lower_is_better:
            if finite(g.reference):
                ax_acc.axhline(g.reference, color=COLOR_CHANCE, linestyle="--", linewidth=1)
            if all(finite(r[g.score.mean]) and r[g.score.mean] > 0 for r in g.summary.values()):
                ax_acc.set_yscale("log")
        elif finite(g.chance):
            ax_acc.axhline(
                g.chance, color=COLOR_CHANCE, linestyle="--", linewidth=1, label="chance"
            )
        floors = (
            []
            if g.score.lower_is_better
            else [
                normalize(r.get("noise_floor"))
                for k, r in g.summary.items()
                if g.panel_of(k) == panel
            ]
        )
        floors = [f for f in floors if f is not None and math.isfinite(f) and f <= 1.0]
        if floors:
            ax_acc.axhline(max(floors), color=COLOR_FLOOR, linestyle="-.", linewidth=1.0)
        ax_acc.set_title(g.panel_label(panel))
        lr_ticks(ax_rate, g.lrs)
        ax_acc.tick_params(labelbottom=False)
        ax_rate.set_xlabel("lr (log scale)")
        ax_rate.set_ylim(-0.05, 1.05)
        ax_rate.set_yticks([0, 0.5, 1])
        if c == 0:
            ax_acc.set_ylabel(
                f"{g.score.mean} (log)" if g.score.lower_is_better else "mean_best_acc (fraction)"
            )
            ax_rate.set_ylabel("collapse_rate\n(fraction of seeds)")
        else:
            ax_acc.tick_params(labelleft=False)
            ax_rate.tick_params(labelleft=False)
        for ax in (ax_acc, ax_rate):
            ax.grid(True, alpha=0.3)
    handles = [
        Line2D(
            [], [], color=colors(ci % 10), marker="o", markersize=4, label=f"clip {value_label(c)}"
        )
        for ci, c in enumerate(g.clips)
    ]
    handles += [
        Line2D(
            [], [], color="#555555", linestyle="--", label="fitted collapse risk (Firth; band: 95%)"
        ),
        Line2D(
            [],
            [],
            color="#555555",
            marker="|",
            linestyle="none",
            markersize=9,
            label="lr at 10% / 50% risk",
        ),
        Line2D(
            [],
            [],
            color="#555555",
            marker=">",
            linestyle=":",
            markersize=6,
            label="safe lr (risk < 10%, 95% confidence)",
        ),
    ]
    if past_edge:
        handles += [
            Line2D(
                [],
                [],
                color="#555555",
                linestyle="none",
                marker="o",
                markerfacecolor="none",
                label="failed incl. never learned past the edge (as fitted)",
            )
        ]
    handles += [Patch(color="#999999", alpha=0.3, label="95% interval")]
    if not g.score.lower_is_better:
        handles += [
            Line2D([], [], color=COLOR_CHANCE, linestyle="--", label="chance"),
            Line2D(
                [], [], color=COLOR_FLOOR, linestyle="-.", label="noise floor of the best epoch"
            ),
        ]
    elif finite(g.reference):
        handles += [
            Line2D([], [], color=COLOR_CHANCE, linestyle="--", label="loss of knowing nothing")
        ]
    titled_legend(
        fig,
        handles,
        f"{g.score.mean} (band: 95% t interval) and collapse_rate (bars: 95% Wilson interval) vs lr",
    )
    return fig


FIT_POINTS = 30  # points of a fitted collapse-risk curve (a band point costs two root searches)


def _draw_boundary(ax: Any, rows: list[dict[str, Any]], color: Any) -> bool:
    """The fitted collapse risk of one slice over its tested lr range (dashed) with its pointwise
    95% band; the lr at 10% and 50% risk, when estimated, as ticks on the curve; hollow circles
    where the fit counts never-learned runs past the learning range as failed (returns whether
    there were any)."""
    counts = slice_counts(rows)
    fit = fit_boundary_counts(counts.lrs, counts.decided, counts.failed)
    if (
        counts.past_edge
    ):  # the rate the fit counts, where runs never learned past the learning range
        past = [
            (lr, f / d)
            for lr, d, f, p in zip(counts.lrs, counts.decided, counts.failed, counts.past)
            if p and d
        ]
        ax.plot(
            [lr for lr, _ in past],
            [rate for _, rate in past],
            linestyle="none",
            marker="o",
            markersize=7,
            markerfacecolor="none",
            markeredgecolor=color,
            markeredgewidth=1.2,
        )
    if fit.n_lrs < 2 or fit.n_runs == 0:
        return bool(counts.past_edge)
    lrs = np.geomspace(fit.lr_min, fit.lr_max, FIT_POINTS)
    risk = fit.risk(lrs)
    lo, hi = fit.band(lrs)
    ax.fill_between(lrs, lo, hi, color=color, alpha=0.12, linewidth=0)
    ax.plot(lrs, risk, color=color, linestyle="--", linewidth=1.1)
    for point in (fit.at_10, fit.at_50):
        if point.kind == "fit" and point.estimate is not None:
            ax.plot([point.estimate], [point.q], marker="|", color=color, markersize=10, mew=1.5)
    if fit.safe.kind == "inside":  # the safe lr: risk below 10% with 95% confidence up to here
        ax.plot([fit.safe.lr], [0.1], marker=">", color=color, markersize=6, linestyle="none")
        ax.axvline(fit.safe.lr, color=color, linestyle=":", linewidth=0.9, ymax=0.25)
    return bool(counts.past_edge)
