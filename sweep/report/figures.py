"""The figures of a study: PNG files under results/<study>/figures/ (matplotlib, Agg).

Usage::

    files = write_figures(tables, study_dir)      # -> [FigureFile(kind, name, path, label), ...]

Figures (the kinds; the column names of docs/architecture.md on every axis):
- `collapse_rate`: heatmap over lr x clip, one panel per batch size (and extra-axis value), k/n.
- `mean_best_acc`: the same layout, annotated with the mean best accuracy.
- `lr_curves`: mean_best_acc with its 95% band and collapse_rate (Wilson interval) vs lr.
- `volatility`: with two or more batch sizes, how much the training loss fluctuates (volatility,
  step_loss_cv) against batch size, one line per lr, one column per clip value.
- `learning_curves`: every seed's val_acc and val_loss per epoch, collapses marked.
- `grad_norms`: every seed's grad_norm_mean/grad_norm_max per epoch with the clip threshold,
  and clip_fraction.
- `autopsy`: per slice with a collapse, why it collapsed: each signal of its collapsed seeds around
  the collapse epoch, against the seeds of its nearest stable lr (sweep.report.autopsy_figure).
- `layer_grad_norms`: for each setting with a collapsed run, the gradient norm of each parameter
  group (layer) of its collapsed seeds around the collapse: which layer blew up first.
The last two are a grid (rows lr, columns clip) per batch size, or one file per setting when a
grid would have more than `max_grid_cells` settings.
"""

from __future__ import annotations

import multiprocessing
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from sweep.core.devices import usable_cores
from sweep.core.files import atomic_write
from sweep.core.forking import fork_unsafe_reason
from sweep.core.setting import setting_label, value_label
from sweep.core.values import normalize
from sweep.report.autopsy_figure import autopsy_notes, autopsy_plan
from sweep.report.figure_base import (  # noqa: F401  (the public names of the figures, in one place)
    COLOR_COLLAPSED,
    COLOR_OK,
    DPI,
    MAX_GRID_CELLS,
    MAX_TRACE_SETTINGS,
    FigureFile,
    Grid,
    grid_of,
)
from sweep.report.find_figure import find_figure
from sweep.report.heatmaps import accuracy_heatmap, collapse_heatmap, lr_curves
from sweep.report.layers import layer_grad_norms, layer_settings
from sweep.report.start_figure import start_plan
from sweep.report.traces import grad_norm_traces, learning_curves
from sweep.report.volatility import has_volatility, volatility_figure

# A drawing process is worth starting for this many figures or more. Measured on a report of 5
# figures (a tiny sweep) and of 15, on 2 cores: two processes took 0.9-1.0 s for 5 figures where
# this process took 1.3-1.4 s, but 1.8 CPU s where it took 1.3; for 15 they took 1.5 s against
# 2.1-3.2 s, at the same CPU.
FIGURES_PER_PROCESS = 4


def _slug(values: dict[str, Any]) -> str:
    text = "_".join(f"{k}-{value_label(v)}" for k, v in values.items())
    return re.sub(r"[^A-Za-z0-9.\-_]+", "_", text) or "all"


def figure_plan(
    tables: Any, max_grid_cells: int = MAX_GRID_CELLS
) -> list[tuple[str, str, str, Callable[[], Figure]]]:
    """(kind, relative name, label, builder) of every figure of `tables`, in report order."""
    if not len(tables.summary):
        return []
    g = grid_of(tables)
    plan: list[tuple[str, str, str, Callable[[], Figure]]] = [
        ("collapse_rate", "figures/collapse_rate.png", "", lambda: collapse_heatmap(tables)),
        (g.score.mean, f"figures/{g.score.mean}.png", "", lambda: accuracy_heatmap(tables)),
        ("lr_curves", "figures/lr_curves.png", "", lambda: lr_curves(tables)),
        *start_plan(tables),  # from a checkpoint: the original run in grey, then the sweep's
    ]
    if has_volatility(g):  # two or more batch sizes: how fluctuation depends on them
        plan.append(
            ("volatility", "figures/volatility.png", "", lambda: volatility_figure(tables, grid=g))
        )
    found = (getattr(tables, "meta", None) or {}).get("find")
    if found:  # `sweep find` / grid.lr=auto ran range tests for this study
        plan.append(("find", "figures/find.png", "", lambda: find_figure(found)))
    drawn = trace_settings(g)
    per_setting = len(drawn) < len(g.summary) or len(g.lrs) * len(g.clips) > max_grid_cells
    used: set[str] = set()
    traces = [("learning_curves", learning_curves)] + (
        [("grad_norms", grad_norm_traces)] if logs_gradients(tables) else []
    )
    for kind, build in traces:
        for panel in g.panels:
            if per_setting:
                for lr in g.lrs:
                    for clip in g.clips:
                        key = g.key(lr, clip, panel)
                        if key not in drawn:
                            continue
                        setting = dict(zip(g.axes, key))
                        name = _unique(f"figures/{kind}/{_slug(setting)}.png", used)
                        plan.append(
                            (
                                kind,
                                name,
                                setting_label(setting, g.axes),
                                lambda b=build, s=setting: b(tables, setting=s, grid=g),
                            )
                        )
            else:
                slug = _slug(dict(zip(g.panel_axes, panel)))
                name = _unique(f"figures/{kind}_{slug}.png", used)
                plan.append(
                    (
                        kind,
                        name,
                        g.panel_label(panel),
                        lambda b=build, p=panel: b(tables, panel=p, grid=g),
                    )
                )
    for key in layer_settings(g):  # which layer blew up first, for the settings that collapsed
        setting = dict(zip(g.axes, key))
        name = _unique(f"figures/layer_grad_norms/{_slug(setting)}.png", used)
        plan.append(
            (
                "layer_grad_norms",
                name,
                setting_label(setting, g.axes),
                lambda s=setting: layer_grad_norms(tables, setting=s, grid=g),
            )
        )
    # why it collapsed (issue 26): each signal around the collapse, per slice with a collapse
    plan += autopsy_plan(tables, g, _slug, lambda name: _unique(name, used))
    return plan


def logs_gradients(tables: Any) -> bool:
    """Did the training record gradient norms? (A user's script may log none.)"""
    curves = tables.curves
    return "grad_norm_mean" in curves and bool(
        np.isfinite(curves["grad_norm_mean"].to_numpy(dtype=float)).any()
    )


def figure_notes(tables: Any) -> list[str]:
    """One line per figure the report cannot draw for these runs, and why."""
    notes = []
    if len(tables.summary) and not logs_gradients(tables):
        notes.append(
            "No gradient-norm figures: the training logged no gradient norms (grad_norm_mean, "
            "grad_norm_max, ...). Log them per epoch, or use sweep.GradientMonitor in a training "
            "function, to see how gradients behave before a collapse."
        )
    return notes + autopsy_notes(tables)


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
    collapsed = sorted(
        (k for k in keys if row[k].get("n_collapsed")),
        key=lambda k: (-float(row[k]["collapse_rate"]), -acc(k)),
    )
    ranked = (
        sorted(stable, key=acc, reverse=True)[:1]
        + collapsed
        + sorted(stable, key=acc, reverse=True)[1:]
    )
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


def write_figures(
    tables: Any, study_dir: str | Path, max_grid_cells: int = MAX_GRID_CELLS
) -> list[FigureFile]:
    """Write every figure under study_dir/figures/ and remove PNGs left there by an earlier layout.

    Many figures are drawn by a pool of forked processes (one per core, each with at least
    `FIGURES_PER_PROCESS` figures): rendering is the slow part of a large report and every figure
    is independent. A handful of figures is drawn here: a drawing process costs about as much CPU
    to start as a figure to draw. The pool forks only where the
    workers' fork rules allow it (`sweep.core.forking.fork_unsafe_reason`: no other thread, as
    in a notebook's kernel, no CUDA, Linux); elsewhere the figures are drawn here. The plan
    reaches the drawing processes as the pool's initializer argument (inherited by the fork,
    never pickled), so calls never share state.
    """
    study_dir = Path(study_dir)
    plan = figure_plan(tables, max_grid_cells)
    paths = [study_dir / name for _, name, _, _ in plan]
    jobs = [(build, path) for (_, _, _, build), path in zip(plan, paths)]
    workers = min(len(plan) // FIGURES_PER_PROCESS, usable_cores())
    if (
        workers > 1
        and "fork" in multiprocessing.get_all_start_methods()
        and fork_unsafe_reason() is None
    ):
        ctx = multiprocessing.get_context("fork")
        pool = ctx.Pool(workers, initializer=_drawing_process, initargs=(jobs,))
        try:
            pool.map(_draw, range(len(jobs)), chunksize=max(1, len(jobs) // (workers * 4)))
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
    else:
        for build, path in jobs:
            save_figure(build(), path)
    files = [
        FigureFile(kind, name, path, label) for (kind, name, label, _), path in zip(plan, paths)
    ]
    written = {f.path.resolve() for f in files}
    folder = study_dir / "figures"
    if folder.is_dir():
        for old in folder.rglob("*.png"):
            if old.resolve() not in written:
                old.unlink(
                    missing_ok=True
                )  # from an earlier grid or layout; report.html no longer shows it
    return files


_JOBS: list[tuple[Callable[[], Figure], Path]] = []  # set in each drawing process only


def _drawing_process(jobs: list[tuple[Callable[[], Figure], Path]]) -> None:
    """Set up a forked drawing process: its figures to draw (the parent's list, inherited by
    the fork), and default signals, not the launcher's handlers (which only forward them): the
    pool stops it with SIGTERM."""
    import signal

    _JOBS[:] = jobs
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _draw(i: int) -> None:
    build, path = _JOBS[i]
    save_figure(build(), path)
