"""Figures on small synthetic tables: files exist, panels and series are what the caption says,
and nothing overlaps on a large grid (8 LRs x 4 clips x 3 batch sizes)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from sweep.analysis.tables import build_tables
from sweep.config import DetectConfig
from sweep.report.figures import (
    COLOR_COLLAPSED,
    COLOR_OK,
    accuracy_heatmap,
    collapse_heatmap,
    figure_plan,
    grad_norm_traces,
    grid_of,
    learning_curves,
    lr_curves,
    write_figures,
)
from sweep.report.volatility import volatility_figure

pytestmark = pytest.mark.xdist_group("plots-study")  # one worker builds the module's study

CHANCE = 0.1


def synthetic_record(
    seed: int,
    epochs: int,
    lr: float,
    instability: float,
    clip: float | None,
    rng: np.random.Generator,
    regression: bool = False,
) -> dict[str, Any]:
    """One run: learns towards 0.9; unstable settings collapse (even seeds) or go NaN (seed 1)."""
    n = epochs
    t = np.arange(1, n + 1)
    acc = CHANCE + (0.9 - CHANCE) * (1 - np.exp(-t / 3)) + rng.normal(0, 0.01, n)
    grad = 0.5 * (1 + instability) * np.exp(0.05 * instability * t) * (1 + 0.1 * rng.random(n))
    nonfinite_epoch = None
    if instability > 0.8 and seed % 2 == 0:  # learned, then lost it for good
        acc[n // 2 :] = CHANCE
        grad[n // 2 - 2 :] *= 20
    if instability > 0.9 and seed == 1:  # blew up: curves end with a NaN epoch
        nonfinite_epoch = min(5, n)
        n = nonfinite_epoch
    loss = -np.log(np.clip(acc, 1e-3, 1))
    curves = {
        "train_loss": loss[:n] * 0.9,
        "val_loss": loss[:n],
        "val_acc": acc[:n],
        "grad_norm_mean": grad[:n],
        "grad_norm_max": grad[:n] * 3,
        "grad_norm_p90": grad[:n] * 1.5,
        "clip_fraction": (
            np.clip((grad[:n] * 1.5 - clip) / (grad[:n] * 1.5), 0, 1) if clip else np.zeros(n)
        ),
        "pred_top_frac": (
            np.full(n, np.nan) if regression else np.where(acc[:n] <= CHANCE + 1e-9, 1.0, 0.2)
        ),
        "lr": np.full(
            n, float(np.float32(lr))
        ),  # what training records: the optimizer's (float32) lr
    }
    curves = {k: [float(x) for x in v] for k, v in curves.items()}
    if nonfinite_epoch:
        for k in (
            "train_loss",
            "val_loss",
            "val_acc",
            "grad_norm_mean",
            "grad_norm_max",
            "grad_norm_p90",
        ):
            curves[k][-1] = math.nan
    return {
        "seed": seed,
        "nonfinite": "loss" if nonfinite_epoch else None,
        "nonfinite_epoch": nonfinite_epoch,
        "steps": 10 * n,
        "seconds": 0.1,
        "curves": curves,
    }


def synthetic_tables(
    lrs: Sequence[float] = (0.01, 0.1, 1.0),
    clips: Sequence[float | None] = (None, 1.0),
    batch_sizes: Sequence[int] = (32,),
    seeds: int = 3,
    epochs: int = 10,
    extra: tuple[str, Sequence[Any]] | None = None,
    regression: bool = False,
):
    """Tables of a grid where instability = lr x (1 without clipping, 0.3 with) x 32 / batch size."""
    rng = np.random.default_rng(0)
    runs = []
    trial = 0
    axes = ["lr", "clip", "batch_size"] + ([extra[0]] if extra else [])
    for lr in lrs:
        for clip in clips:
            for bs in batch_sizes:
                for ev in extra[1] if extra else [None]:
                    setting = {"lr": lr, "clip": clip, "batch_size": bs}
                    if extra:
                        setting[extra[0]] = ev
                    instability = lr * (1.0 if clip is None else 0.3) * 32 / bs
                    for seed in range(seeds):
                        runs.append(
                            (
                                setting,
                                synthetic_record(
                                    seed, epochs, lr, instability, clip, rng, regression
                                ),
                                trial,
                            )
                        )
                    trial += 1
    tables = build_tables(runs, CHANCE, DetectConfig(), axes=axes)
    tables.meta = {
        "config": {"study": {"name": "synthetic"}},
        "study": "synthetic",
        "task": {"chance": CHANCE, "kind": "regression" if regression else "classification"},
        "detect": DetectConfig().__dict__,
    }
    return tables


@pytest.fixture(scope="module")
def small():
    return synthetic_tables()


# --------------------------------------------------------------------------- inspection helpers


def panels(fig) -> list:
    """Data axes (not colour bars)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def colorbars(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def _visible_ticklabels(axis) -> list:
    lo, hi = sorted(axis.get_view_interval())
    out = []
    for label in axis.get_ticklabels():
        pos = label.get_position()[0 if axis.axis_name == "x" else 1]
        if label.get_visible() and label.get_text().strip() and lo - 1e-9 <= pos <= hi + 1e-9:
            out.append(label)
    return out


def layout_problems(fig) -> list[str]:
    """Overlapping texts, texts over another panel, texts or panels outside the figure."""
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    W, H = fig.canvas.get_width_height()
    items = []  # (bbox, owner axes or None, description)
    for ax in fig.axes:
        texts = [
            ax.title,
            ax._left_title,
            ax._right_title,
            ax.xaxis.label,
            ax.yaxis.label,
            *ax.texts,
        ]
        texts += _visible_ticklabels(ax.xaxis) + _visible_ticklabels(ax.yaxis)
        for t in texts:
            if t.get_visible() and t.get_text().strip():
                items.append((t.get_window_extent(renderer), ax, t.get_text()))
    for t in fig.texts:
        if t.get_visible() and t.get_text().strip():
            items.append((t.get_window_extent(renderer), None, t.get_text()))
    for leg in fig.legends:
        for t in [*leg.get_texts(), leg.get_title()]:
            if t.get_visible() and t.get_text().strip():
                items.append((t.get_window_extent(renderer), "legend", t.get_text()))
    problems = []
    tol = 1.0
    for box, _, text in items:
        if box.x0 < -tol or box.y0 < -tol or box.x1 > W + tol or box.y1 > H + tol:
            problems.append(f"outside the figure: {text!r}")
    for i in range(len(items)):
        a, oa, ta = items[i]
        for j in range(i + 1, len(items)):
            b, ob, tb = items[j]
            if min(a.x1, b.x1) - max(a.x0, b.x0) > tol and min(a.y1, b.y1) - max(a.y0, b.y0) > tol:
                problems.append(f"overlap: {ta!r} / {tb!r}")
    axes_boxes = [(ax, ax.get_window_extent(renderer)) for ax in fig.axes]
    for box, owner, text in items:  # a figure legend's texts (owner "legend") own no panel
        for ax, abox in axes_boxes:
            if ax is owner:
                continue
            if (
                min(box.x1, abox.x1) - max(box.x0, abox.x0) > tol
                and min(box.y1, abox.y1) - max(box.y0, abox.y0) > tol
            ):
                problems.append(f"text over another panel: {text!r}")
    for i, (_ax, a) in enumerate(axes_boxes):
        for _bx, b in axes_boxes[i + 1 :]:
            if min(a.x1, b.x1) - max(a.x0, b.x0) > tol and min(a.y1, b.y1) - max(a.y0, b.y0) > tol:
                problems.append("panels overlap")
    return problems


def test_layout_problems_finds_a_legend_over_a_panel_and_overlapping_texts():
    """The layout checker that the no-overlap tests rely on reports what it is meant to find."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], label="a long legend entry")
    assert layout_problems(fig) == []
    fig.legend(loc="center")  # a figure legend in the middle of the panel
    assert any(p.startswith("text over another panel") for p in layout_problems(fig))

    fig = Figure(figsize=(4, 3))
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, "one text")
    ax.text(0.5, 0.5, "another text")
    assert any(p.startswith("overlap") for p in layout_problems(fig))


# --------------------------------------------------------------------------- figures on the small grid


def test_collapse_heatmap_has_one_panel_per_batch_size_annotated_k_of_n():
    t = synthetic_tables(batch_sizes=(32, 128))
    fig = collapse_heatmap(t)
    axs = panels(fig)
    assert [ax.get_title() for ax in axs] == ["batch size 32", "batch size 128"]
    assert len(colorbars(fig)) == 1  # one colour scale shared by every panel
    assert all(len(ax.images) == 1 and ax.images[0].get_array().shape == (2, 3) for ax in axs)
    texts = [tx.get_text() for tx in axs[0].texts]
    assert len(texts) == 6 and all(tx.count("/") == 1 for tx in texts)
    # lr=1 without clipping, batch 32: seeds 0 and 2 collapse, seed 1 goes non-finite -> 3/3
    assert texts[2] == "3/3"
    assert axs[0].images[0].get_clim() == axs[1].images[0].get_clim() == (0.0, 1.0)


def test_accuracy_heatmap_annotates_means_on_a_shared_scale(small):
    fig = accuracy_heatmap(small)
    (ax,) = panels(fig)
    texts = [tx.get_text() for tx in ax.texts]
    means = [f"{v:.3f}" for v in small.summary["mean_best_acc"]]
    # summary rows are lr-major, clip-minor; cells are read row (clip) by row
    assert sorted(texts) == sorted(means)
    assert "mean_best_acc" in colorbars(fig)[0].get_ylabel()


def test_lr_curves_has_accuracy_and_collapse_rows_with_a_line_per_clip():
    t = synthetic_tables(batch_sizes=(32, 64, 128))
    fig = lr_curves(t)
    axs = panels(fig)
    assert len(axs) == 6  # 3 batch sizes x (accuracy, collapse rate)
    acc = [ax for ax in axs if ax.get_title()]
    assert [ax.get_title() for ax in acc] == ["batch size 32", "batch size 64", "batch size 128"]
    for ax in acc:
        lines = [ln for ln in ax.get_lines() if ln.get_label().startswith("clip")]
        assert [ln.get_label() for ln in lines] == ["clip none", "clip 1"]
        assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 2  # 95% bands
        assert ax.get_xscale() == "log"
    rates = [ax for ax in axs if not ax.get_title()]
    assert all(
        len(ax.containers) == 2 and isinstance(ax.containers[0], ErrorbarContainer) for ax in rates
    )
    assert rates[0].get_ylabel().startswith("collapse_rate")
    assert acc[0].get_shared_x_axes().joined(acc[0], rates[0])


def test_learning_curves_draw_every_seed_and_mark_collapses(small):
    fig = learning_curves(small)
    axs = panels(fig)
    assert len(axs) == 3 * 2 * 2  # rows lr x columns clip, accuracy and loss each
    titles = [ax.get_title() for ax in axs if ax.get_title()]
    assert titles[:2] == ["lr=0.01, clip none", "lr=0.01, clip 1"]
    top = axs[8]  # lr=1, clip none: seeds 0, 2 diverge, seed 1 is non-finite
    assert top.get_title() == "lr=1, clip none"
    seeds = [
        ln
        for ln in top.get_lines()
        if ln.get_linestyle() == "-" and ln.get_color() in (COLOR_OK, COLOR_COLLAPSED)
    ]
    assert len(seeds) == 3 and all(ln.get_color() == COLOR_COLLAPSED for ln in seeds)
    xs = [ln for ln in top.get_lines() if ln.get_marker() == "x"]
    assert len(xs) == 1 and xs[0].get_xdata()[0] == 5  # the non-finite end, at its last epoch
    vlines = [ln for ln in top.get_lines() if ln.get_linestyle() == ":"]
    assert len(vlines) == 3  # a collapse epoch per collapsed seed
    chance = [ln for ln in top.get_lines() if ln.get_linestyle() == "--"]
    assert chance and chance[0].get_ydata()[0] == pytest.approx(CHANCE)
    stable = axs[0]
    assert all(ln.get_color() == COLOR_OK for ln in stable.get_lines() if ln.get_linestyle() == "-")
    assert axs[1].get_yscale() == "log" and axs[1].get_ylabel().startswith("val_loss")


def test_grad_norm_traces_draw_mean_max_threshold_and_clip_fraction(small):
    fig = grad_norm_traces(small)
    axs = panels(fig)
    norm, frac = axs[2], axs[3]  # lr=0.01, clip 1
    assert norm.get_title() == "lr=0.01, clip 1" and norm.get_yscale() == "log"
    seeds = [ln for ln in norm.get_lines() if ln.get_color() == COLOR_OK]
    assert len(seeds) == 2 * 3  # grad_norm_mean and grad_norm_max per seed
    assert sorted(ln.get_linestyle() for ln in seeds) == ["-"] * 3 + ["--"] * 3
    threshold = [ln for ln in norm.get_lines() if ln.get_linestyle() == "-."]
    assert len(threshold) == 1 and threshold[0].get_ydata()[0] == 1.0
    assert axs[1].get_ylabel().startswith("clip_fraction") and len(frac.get_lines()) >= 3
    no_clip = axs[1]
    assert any(t.get_text() == "no clipping" for t in no_clip.texts)


def test_traces_of_one_setting(small):
    fig = learning_curves(small, setting={"lr": 0.1, "clip": 1.0, "batch_size": 32})
    assert len(panels(fig)) == 2
    assert "lr=0.1, clip 1, batch size 32" in fig.legends[0].get_title().get_text()


def test_regression_tables_plot_without_pred_top_frac():
    t = synthetic_tables(regression=True)
    assert t.curves["pred_top_frac"].isna().all()
    fig = learning_curves(t)
    assert "MSE" in panels(fig)[1].get_ylabel()
    assert not layout_problems(fig)


def test_extra_axis_gets_its_own_panels():
    t = synthetic_tables(extra=("model.hidden_size", (16, 64)))
    assert [ax.get_title() for ax in panels(collapse_heatmap(t))] == [
        "batch size 32, model.hidden_size=16",
        "batch size 32, model.hidden_size=64",
    ]
    plan = figure_plan(t)
    names = [name for _, name, _, _ in plan]
    assert "figures/learning_curves_batch_size-32_model.hidden_size-16.png" in names
    assert len([n for n in names if n.startswith("figures/grad_norms_")]) == 2


def test_write_figures_writes_pngs_and_removes_stale_ones(small, tmp_path):
    stale = tmp_path / "figures" / "learning_curves" / "old.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    files = write_figures(small, tmp_path)
    assert [f.kind for f in files] == [
        "collapse_rate",
        "mean_best_acc",
        "lr_curves",
        "learning_curves",
        "grad_norms",
    ]
    for f in files:
        assert f.path == tmp_path / f.name and f.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not stale.exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_one_file_per_setting_when_the_grid_is_large(small, tmp_path):
    files = write_figures(small, tmp_path, max_grid_cells=4)
    per_setting = [f for f in files if f.kind == "learning_curves"]
    assert len(per_setting) == 6 and all(
        f.name.startswith("figures/learning_curves/") for f in per_setting
    )
    assert per_setting[0].label == "lr=0.01, clip none, batch size 32"


def test_no_pyplot_figures_are_left_open_and_the_backend_is_untouched(small, tmp_path):
    """The report draws without pyplot: a caller's open figures and chosen backend stay as they
    were. The backend is set to svg first, which no report code would choose."""
    import matplotlib.pyplot as plt

    previous = matplotlib.get_backend()
    plt.switch_backend("svg")
    try:
        before = plt.get_fignums()
        write_figures(small, tmp_path)
        assert plt.get_fignums() == before
        assert matplotlib.get_backend() == "svg"
    finally:
        plt.switch_backend(previous)


def test_empty_tables_write_no_figures(tmp_path):
    t = synthetic_tables(lrs=(), clips=(None,))
    assert write_figures(t, tmp_path) == []


def test_small_figures_have_no_overlaps(small):
    for build in (collapse_heatmap, accuracy_heatmap, lr_curves, learning_curves, grad_norm_traces):
        assert layout_problems(build(small)) == [], build.__name__


def test_grid_keys_match_curves_despite_float32_lr_column(small):
    g = grid_of(small)
    assert set(g.seeds) == set(g.summary)
    assert all(len(seeds) == 3 for seeds in g.seeds.values())


# --------------------------------------------------------------------------- the large grid


@pytest.mark.slow
def test_large_grid_8_lrs_4_clips_3_batch_sizes_has_no_overlaps(tmp_path):
    lrs = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 1.0]
    t = synthetic_tables(
        lrs=lrs, clips=(None, 0.25, 1.0, 10.0), batch_sizes=(16, 64, 256), seeds=3, epochs=20
    )
    assert len(t.summary) == 96
    g = grid_of(t)
    for build in (collapse_heatmap, accuracy_heatmap, lr_curves, volatility_figure):
        fig = build(t)
        assert layout_problems(fig) == [], build.__name__
        w, h = fig.get_size_inches() * fig.dpi
        assert w <= 1800 and h <= 2000, (build.__name__, w, h)
    for build in (learning_curves, grad_norm_traces):
        fig = build(t, panel=g.panels[-1], grid=g)
        assert layout_problems(fig) == [], build.__name__
        assert len(panels(fig)) == 8 * 4 * 2
    # Every figure of the report builds; the ones drawn above are the report's at this size
    # (drawing the other batch sizes' traces again would only repeat the same code at a cost).
    plan = figure_plan(t)
    assert [name for _, name, _, _ in plan][:4] == [
        "figures/collapse_rate.png",
        "figures/mean_best_acc.png",
        "figures/lr_curves.png",
        "figures/volatility.png",
    ]
    assert len(plan) == 3 + 1 + 2 * 3  # heatmaps and lr curves, volatility, traces per batch size
    for _, name, _, build in plan:
        assert isinstance(build(), Figure), name
    # How long the report takes is a benchmark's claim (benchmarks/bench_sweep.py prints the
    # `sweep report` time against its 60 s target), not a test's: a loaded CI machine is no
    # measure of it.
