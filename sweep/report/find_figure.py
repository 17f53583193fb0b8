"""The range-test figure (`sweep find`): smoothed loss against the learning rate, per clip value.

Usage: ``write_find_figure(data, study_dir)`` -> figures/find.png, from the study's stored range
tests (`sweep.launch.find.FindResult.to_dict()`): every seed's smoothed loss (log lr), where it
diverged (x) and fell fastest (o), and the span of the proposed grid shaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from sweep.core.files import atomic_write
from sweep.core.records import decode_floats
from sweep.core.setting import value_label
from sweep.report.figure_base import DPI, FONT, new_figure, titled_legend, with_rc


@with_rc
def find_figure(data: dict[str, Any]) -> Figure:
    clips = list(dict.fromkeys(r["clip"] for r in data["runs"]))
    fig = new_figure(min(16.0, 4.2 * len(clips) + 0.8), 3.6)
    axs = fig.subplots(1, len(clips), squeeze=False, sharey=True)[0]
    colors = colormaps["tab10"]
    proposed = data.get("proposed") or []
    for ax, clip in zip(axs, clips):
        runs = [r for r in data["runs"] if r["clip"] == clip]
        for i, r in enumerate(runs):
            lrs, smoothed = decode_floats(r["lrs"]), decode_floats(r["smoothed"])
            ax.plot(lrs, smoothed, color=colors(i % 10), linewidth=1.2)
            if r.get("diverged_lr"):
                ax.plot(
                    [r["diverged_lr"]],
                    [np.nanmax(smoothed[np.isfinite(smoothed)])]
                    if np.isfinite(smoothed).any()
                    else [np.nan],
                    marker="x",
                    color=colors(i % 10),
                    markersize=8,
                    mew=2,
                )
            if r.get("steepest_lr"):
                k = int(np.argmin(np.abs(lrs - r["steepest_lr"])))
                ax.plot([lrs[k]], [smoothed[k]], marker="o", color=colors(i % 10), markersize=5)
        if proposed:
            ax.axvspan(min(proposed), max(proposed), color="#2ca02c", alpha=0.08)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log scale)")
        ax.set_title("no clipping" if clip is None else f"clip {value_label(clip)}", fontsize=FONT)
        ax.grid(True, alpha=0.3)
        finite = np.concatenate([decode_floats(r["smoothed"]) for r in runs])
        finite = finite[np.isfinite(finite)]
        if finite.size:
            ax.set_ylim(finite.min() * 0.95, min(finite.max(), 4 * finite.min()) * 1.05)
    axs[0].set_ylabel("training loss (smoothed)")
    handles = [
        Line2D([], [], color=colors(0), label="a seed's smoothed loss"),
        Line2D([], [], color="black", marker="x", linestyle="", mew=2, label="diverged"),
        Line2D([], [], color="black", marker="o", linestyle="", label="falls fastest"),
        Patch(
            color="#2ca02c",
            alpha=0.15,
            label="proposed grid: " + ", ".join(value_label(v) for v in proposed),
        ),
    ]
    settings = data.get("settings", {})
    titled_legend(
        fig,
        handles,
        f"learning-rate range test: the loss over an exponential lr ramp of "
        f"{settings.get('steps', '?')} steps (batch size {settings.get('batch_size', '?')})",
    )
    return fig


def write_find_figure(data: dict[str, Any], study_dir: str | Path) -> Path:
    path = Path(study_dir) / "figures" / "find.png"
    fig = find_figure(data)
    return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=DPI))
