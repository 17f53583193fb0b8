"""The recommended setting: within the noise of the best accuracy, and the farthest below the safe
LR of its slice (pure functions over the summary and runs tables).

Usage::

    rec = recommend(summary, axes, runs=runs, n_val=370)
    rec.text(axes)           # "lr=0.01, clip none, batch size 32: mean best accuracy 0.984 (...)"
    rec.choice_text(axes)    # which settings are within noise of the best, and why this one

The rule:
1. Candidates: settings with no collapsed run where some seed learned something. A candidate
   whose slice locates a boundary must lie at or below its slice's safe LR (the largest lr whose
   collapse risk is below 10% with 95% confidence); a slice without any collapse has located none,
   and its settings stay candidates (their margin is at least the tested range above them).
   When no candidate is at or below a safe LR, every setting without a collapse is a candidate
   (the recommendation then lies above its slice's safe LR), and the text says so.
2. The best is the candidate with the highest mean best accuracy. The candidates within its noise
   (`sweep.analysis.choice.within_noise_of_best`: not shown worse by the seed spread and the
   validation noise, every pair guarded, and no further below the best than the validation noise
   reaches) are "within noise". A candidate the seeds cannot show worse but that lies further
   below is never preferred: the seeds are too few to tell, and the text says so.
3. Among those, the one with the widest margin below its slice's safe LR (safe / lr, or lr_max / lr
   without a boundary) is recommended: as good as the data can tell, and the farthest from
   collapse. Ties go to the higher mean, then to grid order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import stdtrit

from sweep.analysis.boundary import slice_boundary
from sweep.analysis.choice import validation_half_width, within_noise_of_best
from sweep.core.setting import Setting, setting_label
from sweep.core.values import normalize


@dataclass(frozen=True)
class Recommendation:
    """The recommended setting, and how it was chosen."""

    setting: dict[str, Any]
    mean_best_acc: float
    mean_best_acc_lo: float
    mean_best_acc_hi: float
    n_runs: int
    grad_norm_p90: float
    n_val: int | None = None
    val_half_width: float = math.nan  # 95% half-width of one accuracy's validation-set noise
    tied: tuple = ()  # (setting, mean) of the other candidates within noise of the best
    best: tuple | None = None  # (setting, mean) of the most accurate candidate when not this one
    margin: float | None = None  # safe lr (or lr_max without a boundary) / lr
    margin_located: bool = True  # False: the slice had no collapse (margin at least this)
    safe_respected: bool = True  # False: no candidate lay at or below a safe lr
    excluded: tuple = field(default=())  # settings without a collapse left out: above their safe lr
    # (setting, mean) of the most accurate of those, when more accurate
    excluded_best: tuple | None = None
    # (setting, mean, seeds) of candidates the seeds could not show worse than the best although
    # they lie beyond its validation noise: too few seeds to tell, so not preferred to the best
    too_few: tuple = ()
    label: str = "mean best accuracy"  # what the means are (a loss study: "mean best ... loss")

    def in_units(self, score: Any) -> Recommendation:
        """The same recommendation with its means back in the score's units (a loss study scores
        settings by the negated loss so that higher is better; see `recommend`)."""
        if not score.lower_is_better:
            return self
        neg = lambda pairs: tuple((st, -m, *rest) for st, m, *rest in pairs)  # noqa: E731
        return dataclasses.replace(
            self,
            mean_best_acc=-self.mean_best_acc,
            mean_best_acc_lo=-self.mean_best_acc_hi,
            mean_best_acc_hi=-self.mean_best_acc_lo,
            tied=neg(self.tied),
            best=neg([self.best])[0] if self.best else None,
            excluded_best=neg([self.excluded_best])[0] if self.excluded_best else None,
            too_few=neg(self.too_few),
            label=score.label,
        )

    def text(self, axes: Sequence[str]) -> str:
        """The recommendation in one sentence (the report's green box and the verdict)."""
        seeds = f"over {self.n_runs} seed{'s' if self.n_runs != 1 else ''}"
        if math.isfinite(self.val_half_width):
            spread = (
                f"(95% CI over seeds {self.mean_best_acc_lo:.3f}-{self.mean_best_acc_hi:.3f}; validation noise "
                f"+-{self.val_half_width:.3f} at {self.n_val} sequences) {seeds}"
            )
        else:
            spread = f"(95% CI {self.mean_best_acc_lo:.3f}-{self.mean_best_acc_hi:.3f}) {seeds}"
        value = (
            f"{self.mean_best_acc:.3f}" if "accuracy" in self.label else f"{self.mean_best_acc:.4g}"
        )
        return f"{setting_label(self.setting, axes)}: {self.label} {value} {spread}, no collapse"

    def choice_text(self, axes: Sequence[str]) -> str:
        """Which settings are within noise of the best, and why this one (empty when alone)."""
        parts = []
        if not self.safe_respected:
            parts.append(
                "No setting without a collapse lies at or below its slice's safe lr, so this one is "
                "chosen among all settings without a collapse, above the safe lr: more seeds at "
                "lower lrs, or `sweep refine`, would locate a safe one"
            )
        if self.tied or self.best:
            others = ", ".join(f"{setting_label(st, axes)} ({m:.3f})" for st, m in self.tied[:4])
            others += f" and {len(self.tied) - 4} more" if len(self.tied) > 4 else ""
            if self.best:
                text = f"It is within the noise of the best, {setting_label(self.best[0], axes)} ({self.best[1]:.3f})"
                parts.append(text + (f", as are {others}" if others else ""))
            else:
                parts.append(f"Within its noise: {others}")
            if self.margin is not None:
                where = (
                    "below its slice's safe lr"
                    if self.margin_located
                    else "below the largest lr tried in its slice, where nothing collapsed"
                )
                parts.append(
                    f"it is chosen because it sits farthest from collapse, x{self.margin:.3g} {where}"
                )
        if self.too_few:
            shown = ", ".join(
                f"{setting_label(st, axes)} ({m:.3f}, {n} seed{'s' if n != 1 else ''})"
                for st, m, n in self.too_few[:3]
            )
            more = f" and {len(self.too_few) - 3} more" if len(self.too_few) > 3 else ""
            many = len(self.too_few) > 1
            parts.append(
                f"{shown}{more} {'lie' if many else 'lies'} further below the best than the validation "
                f"noise reaches, and {'their' if many else 'its'} seeds are too few to tell whether "
                f"{'they are' if many else 'it is'} as good, so {'they are' if many else 'it is'} not "
                f"preferred for sitting farther from collapse (more seeds would tell)"
            )
        if self.excluded:
            parts.append(
                f"{len(self.excluded)} setting(s) without a collapse were left out because they lie above "
                f"their slice's safe lr ({', '.join(setting_label(s, axes) for s in self.excluded[:3])}"
                f"{', ...' if len(self.excluded) > 3 else ''})"
            )
        if self.excluded_best:
            st, m = self.excluded_best
            parts.append(
                f"the {'most accurate' if 'accuracy' in self.label else 'lowest-loss'} of them, "
                f"{setting_label(st, axes)} ({m:.3f}), had no collapse either, but "
                f"too few runs near it show that its risk stays under 10%: more seeds there, or `sweep "
                f"refine`, would tell whether it is safe"
            )
        parts = [
            p if i == 0 or not p[:1].isupper() or p[1:2].isupper() else p[0].lower() + p[1:]
            for i, p in enumerate(parts)
        ]
        return "; ".join(parts) + "." if parts else ""


def _seed_sd(row: dict[str, Any], runs: dict[tuple, list[float]] | None, key: tuple) -> float:
    """The per-seed spread of best accuracies: from runs.csv, else from the t interval's width."""
    n = int(row["n_runs"])
    if runs is not None and key in runs and len(runs[key]) > 1:
        return float(np.std(runs[key], ddof=1))
    if n < 2:
        return math.nan
    half = (float(row["mean_best_acc_hi"]) - float(row["mean_best_acc_lo"])) / 2
    return half / float(stdtrit(n - 1, 0.975)) * math.sqrt(n)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """`frame.to_dict("records")`, column by column (pandas builds records row by row, which
    costs a millisecond per row when a column is Arrow-backed)."""
    columns = {c: frame[c].tolist() for c in frame.columns}
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def _learned(row: dict[str, Any]) -> bool:
    return int(row.get("n_never_learned", 0) or 0) < int(row["n_runs"])


def recommend(
    summary: pd.DataFrame,
    axes: Sequence[str],
    runs: pd.DataFrame | None = None,
    n_val: int | None = None,
    score: Any = None,
) -> Recommendation | None:
    """The recommended setting (module doc), or None when every setting collapsed or learned nothing.

    `score` (`sweep.analysis.metric.Score`): how settings are scored; a loss study is scored by
    its mean best loss, lower is better, with the seeds' spread alone as its noise (a loss has no
    binomial validation noise)."""
    if score is not None and score.lower_is_better:
        summary = _oriented(summary, score, {score.mean: "mean_best_acc"})
        if runs is not None and score.run in runs:
            runs = _oriented(runs, score, {score.run: "best_acc"})
        rec = _recommend(summary, axes, runs, None)
        return rec.in_units(score) if rec is not None else None
    return _recommend(summary, axes, runs, n_val)


def _oriented(frame: pd.DataFrame, score: Any, names: dict[str, str]) -> pd.DataFrame:
    """`frame` with the score's columns negated into the accuracy columns' places (a loss: higher
    is better after negation; the interval's ends swap)."""
    out = frame.copy()
    for source, target in names.items():
        out[target] = -pd.to_numeric(out[source], errors="coerce")
        if f"{source}_lo" in out:
            out[f"{target}_lo"] = -pd.to_numeric(out[f"{source}_hi"], errors="coerce")
            out[f"{target}_hi"] = -pd.to_numeric(out[f"{source}_lo"], errors="coerce")
    return out


def _recommend(
    summary: pd.DataFrame,
    axes: Sequence[str],
    runs: pd.DataFrame | None,
    n_val: int | None,
) -> Recommendation | None:
    axes = list(axes)
    keys = [a for a in axes if a != "lr"]
    rows = [
        r
        for r in _records(summary)
        if int(r["n_collapsed"]) == 0
        and normalize(r["mean_best_acc"]) is not None
        and _learned(r)
        and int(r["n_runs"]) > 0
    ]
    if not rows:
        return None
    by_slice: dict[tuple, list[dict[str, Any]]] = {}
    for r in _records(summary):
        by_slice.setdefault(Setting.of(r, keys).values(keys), []).append(r)
    fits = {k: slice_boundary(v) for k, v in by_slice.items()}
    margins, located, eligible = [], [], []
    for r in rows:
        fit = fits[Setting.of(r, keys).values(keys)]
        lr = float(r["lr"])
        if fit.n_collapsed == 0:  # no boundary located: the tested range is the margin known
            margins.append(fit.lr_max / lr)
            located.append(False)
            eligible.append(True)
        elif fit.safe.kind in ("inside", "above"):
            margins.append(fit.safe.lr / lr)
            located.append(True)
            eligible.append(lr <= fit.safe.lr * (1 + 1e-9))
        else:
            margins.append(None)
            located.append(True)
            eligible.append(False)
    respected = any(eligible)
    pick = [i for i, ok in enumerate(eligible) if ok] if respected else list(range(len(rows)))
    excluded = (
        tuple({a: normalize(rows[i][a]) for a in axes} for i in range(len(rows)) if not eligible[i])
        if respected
        else ()
    )
    per_run = None
    if runs is not None and len(runs) and "best_acc" in runs:
        per_run = {}
        ok = (
            ~runs["outcome"].isin(["crashed", "timed_out"])
            if "outcome" in runs
            else pd.Series(True, index=runs.index)
        )
        for r in _records(runs[ok]):
            if normalize(r.get("best_acc")) is not None:
                per_run.setdefault(Setting.of(r, axes).values(axes), []).append(
                    float(r["best_acc"])
                )
    cand = [rows[i] for i in pick]
    means = [float(r["mean_best_acc"]) for r in cand]
    sds = [_seed_sd(r, per_run, Setting.of(r, axes).values(axes)) for r in cand]
    tied, too_few = within_noise_of_best(means, sds, [int(r["n_runs"]) for r in cand], n_val)
    best = max(range(len(cand)), key=lambda j: (means[j], float(cand[j]["mean_best_acc_lo"]), -j))
    within = [j for j in range(len(cand)) if tied[j]]

    def rank(j: int) -> tuple:
        m = margins[pick[j]]
        return (m if m is not None else -math.inf, means[j], float(cand[j]["mean_best_acc_lo"]), -j)

    chosen = max(within, key=rank)
    row = cand[chosen]
    label = lambda r: {a: normalize(r[a]) for a in axes}  # noqa: E731
    left_out = [rows[i] for i in range(len(rows)) if respected and not eligible[i]]
    top = max(left_out, key=lambda r: float(r["mean_best_acc"]), default=None)
    excluded_best = (
        (label(top), float(top["mean_best_acc"]))
        if top is not None and float(top["mean_best_acc"]) > float(row["mean_best_acc"])
        else None
    )
    return Recommendation(
        setting=label(row),
        mean_best_acc=float(row["mean_best_acc"]),
        mean_best_acc_lo=float(row["mean_best_acc_lo"]),
        mean_best_acc_hi=float(row["mean_best_acc_hi"]),
        n_runs=int(row["n_runs"]),
        grad_norm_p90=float(row["grad_norm_p90"]),
        n_val=n_val,
        val_half_width=validation_half_width(float(row["mean_best_acc"]), n_val),
        tied=tuple(
            (label(cand[j]), means[j])
            for j in sorted(within, key=lambda j: -means[j])
            if j not in (chosen, best)
        ),
        best=(label(cand[best]), means[best]) if best != chosen else None,
        margin=margins[pick[chosen]],
        margin_located=located[pick[chosen]],
        safe_respected=respected,
        excluded=excluded,
        excluded_best=excluded_best,
        too_few=tuple(
            (label(cand[j]), means[j], int(cand[j]["n_runs"]))
            for j in sorted(range(len(cand)), key=lambda j: -means[j])
            if too_few[j]
        ),
    )
