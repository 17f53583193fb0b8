"""Where `sweep refine` adds runs: a pure plan from the per-setting counts (sequential design).

Usage::

    plan = plan_round(summary, axes, factor=1.78, budget=30, new_seeds=3, extra_seeds=3, max_seeds=20)
    plan.additions          # [Addition(setting, seeds, why), ...]: what to train next, and why
    plan.resolved           # slices whose lr_at_10 is known within `factor`

Per slice (every lr at one combination of the other axes) whose lr at 10% collapse risk is not
yet known within `factor` (its 95% interval's hi/lo), one round adds, within the run budget:

1. a learning rate: the geometric midpoint of the widest gap between tested learning rates
   inside the bracket, from the largest lr with no collapse (below the first that collapses) to
   the smallest lr that collapses often (half its runs or more); when nothing collapses, 3x the
   largest lr; when every lr collapses often, a third of the smallest;
2. seeds where a setting's exact 95% interval of its collapse rate straddles 10% or 50% risk
   (inside the bracket): more runs there narrow the fit where the answer is decided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from sweep.analysis.boundary import slice_counts
from sweep.analysis.boundary import fit_boundary_counts
from sweep.analysis.noise import lower_bound, upper_bound
from sweep.core.setting import Setting, slice_label, value_label

QUANTILES = (0.1, 0.5)


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
    resolved: list[str] = field(default_factory=list)  # slice labels known within the factor
    open: list[str] = field(default_factory=list)  # slice labels still open
    notes: list[str] = field(default_factory=list)  # per slice: where it stands

    @property
    def runs(self) -> int:
        return sum(a.runs for a in self.additions)


def known_within(fit: Any, factor: float) -> bool:
    """Is lr_at_10 estimated, with both 95% ends inside the tested range and hi/lo <= factor?"""
    r = fit.at_10
    return r.kind == "fit" and r.lo is not None and r.hi is not None and r.hi / r.lo <= factor


def _straddles(k: int, n: int) -> bool:
    """The exact two-sided 95% interval of k/n contains 10% or 50%."""
    if n == 0:
        return True
    lo, hi = lower_bound(k, n, 0.025), upper_bound(k, n, 0.025)
    return any(lo <= q <= hi for q in QUANTILES)


def _new_lr(lrs: list[float], rates: list[float], collapsed: list[int]) -> tuple[float, str]:
    """The next learning rate of a slice, and why."""
    if not any(collapsed):
        return lrs[-1] * 3, f"no collapse up to lr {value_label(lrs[-1])}: extend upward"
    if all(r >= 0.5 for r in rates):
        return lrs[0] / 3, f"collapse at {value_label(lrs[0])} already: extend downward"
    first = next(i for i, k in enumerate(collapsed) if k > 0)
    lo = first - 1 if first > 0 else 0
    often = [i for i, r in enumerate(rates) if r >= 0.5 and i >= first]
    if not often:
        return lrs[-1] * 3, f"collapse stays rare up to lr {value_label(lrs[-1])}: extend upward"
    hi = often[0]
    if hi == lo:
        return lrs[0] / 3, f"collapse at {value_label(lrs[0])} already: extend downward"
    gaps = [(lrs[i + 1] / lrs[i], i) for i in range(lo, hi)]
    ratio, i = max(gaps)
    mid = float(f"{math.sqrt(lrs[i] * lrs[i + 1]):.3g}")
    return mid, (f"geometric midpoint of lr {value_label(lrs[i])} ({collapsed[i]} collapsed) and "
                 f"{value_label(lrs[i + 1])} ({collapsed[i + 1]} collapsed), the widest gap inside the bracket")


def plan_round(summary: Any, axes: Sequence[str], factor: float, budget: int, new_seeds: int,
               extra_seeds: int, max_seeds: int) -> RoundPlan:
    """The additions of one round (within `budget` runs), from a study's summary table."""
    keys = [a for a in axes if a != "lr"]
    slices: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in summary.to_dict("records"):
        slices.setdefault(Setting.of(row, keys).values(keys), []).append(row)
    plan = RoundPlan()
    for key, rows in slices.items():
        rows = sorted(rows, key=lambda r: float(r["lr"]))
        where = slice_label(dict(zip(keys, key))) or "the grid"
        counts = slice_counts(rows)
        fit = fit_boundary_counts(counts.lrs, counts.decided, counts.failed)
        if known_within(fit, factor):
            plan.resolved.append(where)
            plan.notes.append(f"{where}: lr_at_10 {fit.at_10.text()}, known within x{factor:.2f}")
            continue
        plan.open.append(where)
        plan.notes.append(f"{where}: lr_at_10 {fit.at_10.text()}; lr_at_50 {fit.at_50.text()}")
        lrs, n, k = counts.lrs, counts.decided, counts.failed  # never-learned past the edge: failed
        rates = [ki / ni if ni else 0.0 for ki, ni in zip(k, n)]
        lr, why = _new_lr(lrs, rates, k)
        base = {a: v for a, v in zip(keys, key)}
        if lr not in lrs and plan.runs + new_seeds <= budget:
            plan.additions.append(Addition({"lr": lr, **base}, list(range(new_seeds)), f"new lr {value_label(lr)}: {why}"))
        first = next((i for i, ki in enumerate(k) if ki > 0), len(lrs))
        for i, row in enumerate(rows):
            near = max(0, first - 1) <= i  # the bracket and above: where the risk is decided
            runs = int(row["n_runs"])
            if near and _straddles(k[i], n[i]) and runs < max_seeds and plan.runs + extra_seeds <= budget:
                seeds = list(range(runs, min(max_seeds, runs + extra_seeds)))
                plan.additions.append(Addition(
                    {"lr": lrs[i], **base}, seeds,
                    f"+{len(seeds)} seeds at lr {value_label(lrs[i])}: {k[i]}/{n[i]} failed, its 95% interval "
                    f"straddles 10% or 50% risk"))
    plan.additions = [Addition(Setting({a: a_.setting.get(a) for a in axes}).as_dict(), a_.seeds, a_.why)
                      for a_ in plan.additions]
    return plan
