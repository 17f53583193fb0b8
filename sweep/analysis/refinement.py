"""Where `sweep refine` adds runs: a pure plan from the per-setting counts (sequential design).

Usage::

    plan = plan_round(summary, axes, factor=1.78, budget=30, new_seeds=3, extra_seeds=3, max_seeds=20)
    plan.additions          # [Addition(setting, seeds, why), ...]: what to train next, and why
    plan.resolved           # slices whose safe LR is within `factor` below lr_at_10's upper 95% end

A slice (every lr at one combination of the other axes) is resolved when its safe LR (the one-sided
95% lower bound of lr_at_10) lies within `factor` below the upper end of lr_at_10's 95% interval:
then the safe LR is at most that factor below the true lr_at_10, with 95% confidence
(`sweep.analysis.boundary.resolved`). Each open slice gets up to two cohorts, placed where their
expected outcomes raise the safe LR most (`sweep.analysis.boundary.next_cohorts`, a one-step
look-ahead of the kind the continual reassessment method uses): a new lr gets `new_seeds` runs,
a tested one `extra_seeds` more (never above `max_seeds` at one setting). Without any collapse
in a slice the round extends upward (3x the largest lr); when every lr collapses in half its
runs or more, downward (a third of the smallest).

The budget is a promise: the additions hold at most `budget` runs. Slices take turns (every
slice's best cohort first, then the second ones), and the cohort that would cross the budget is
trimmed to the runs that fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sweep.analysis.boundary import fit_boundary_counts, next_cohorts, resolved, slice_counts
from sweep.core.setting import Setting, slice_label, value_label


@dataclass(frozen=True)
class Addition:
    setting: dict[str, Any]
    seeds: list[int]
    why: str

    @property
    def runs(self) -> int:
        return len(self.seeds)


@dataclass
class RoundPlan:
    additions: list[Addition] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)  # slice labels resolved within the factor
    open: list[str] = field(default_factory=list)  # slice labels still open
    notes: list[str] = field(default_factory=list)  # per slice: where it stands

    @property
    def runs(self) -> int:
        return sum(a.runs for a in self.additions)


def slice_resolved(fit: Any, factor: float) -> bool:
    """Is the slice's safe LR inside the tested range and within `factor` below lr_at_10's upper
    95% end? (A slice whose every lr is shown safe is not: its edge lies further up.)"""
    return fit.safe.kind == "inside" and resolved(fit, factor)


def _why(cohort: Any, runs: int, planned: int) -> str:
    what = (
        f"new lr {value_label(cohort.lr)}"
        if cohort.new
        else f"+{runs} seeds at lr {value_label(cohort.lr)}"
    )
    trimmed = f" (trimmed to {runs} of {planned} runs by refine.max_runs)" if runs < planned else ""
    return f"{what}: {cohort.why}{trimmed}"


def _slice_cohorts(
    rows: list[dict[str, Any]],
    base: dict[str, Any],
    fit: Any,
    new_seeds: int,
    extra_seeds: int,
    max_seeds: int,
) -> list[tuple[Any, dict[str, Any], list[int]]]:
    """A slice's cohorts, best first: (cohort, setting, seeds)."""
    runs_at = {float(r["lr"]): int(r["n_runs"]) for r in rows}
    out = []
    for c in next_cohorts(fit, new_seeds, extra_seeds, runs_at=runs_at, max_runs_per_lr=max_seeds):
        start = runs_at.get(c.lr, 0)
        seeds = list(range(start, min(max_seeds, start + c.runs)))
        if seeds:
            out.append((c, {**base, "lr": c.lr}, seeds))
    return out


def plan_round(
    summary: Any,
    axes: Sequence[str],
    factor: float,
    budget: int,
    new_seeds: int,
    extra_seeds: int,
    max_seeds: int,
) -> RoundPlan:
    """The additions of one round (at most `budget` runs), from a study's summary table."""
    keys = [a for a in axes if a != "lr"]
    slices: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in summary.to_dict("records"):
        slices.setdefault(Setting.of(row, keys).values(keys), []).append(row)
    plan = RoundPlan()
    queued: list[
        list[tuple[Any, dict[str, Any], list[int]]]
    ] = []  # per open slice: its cohorts, best first
    for key, rows in slices.items():
        rows = sorted(rows, key=lambda r: float(r["lr"]))
        where = slice_label(dict(zip(keys, key))) or "the grid"
        counts = slice_counts(rows)  # never-learned past the edge count as failed
        fit = fit_boundary_counts(counts.lrs, counts.decided, counts.failed)
        if slice_resolved(fit, factor):
            plan.resolved.append(where)
            plan.notes.append(
                f"{where}: {fit.safe.text()}; lr_at_10 {fit.at_10.text()}: "
                f"resolved within x{factor:.2f}"
            )
            continue
        plan.open.append(where)
        plan.notes.append(f"{where}: {fit.safe.text()}; lr_at_10 {fit.at_10.text()}")
        queued.append(
            _slice_cohorts(rows, dict(zip(keys, key)), fit, new_seeds, extra_seeds, max_seeds)
        )
    left = max(budget, 0)
    for rank in range(max((len(q) for q in queued), default=0)):
        for cohorts in queued:
            if rank >= len(cohorts) or left == 0:
                continue
            cohort, setting, seeds = cohorts[rank]
            take = seeds[:left]
            left -= len(take)
            plan.additions.append(
                Addition(
                    Setting({a: setting.get(a) for a in axes}).as_dict(),
                    take,
                    _why(cohort, len(take), len(seeds)),
                )
            )
    return plan
