"""The verdict paragraph: the numbers of a sweep read in plain language.

Usage: ``reading(summary, slices, recommendation, axes, chance, clip_fractions, noise)`` (called
by `compute_verdicts`). Each sentence is generated from the tables: where runs collapse, what
clipping changes, undecided runs, loss jumps and fluctuation (sweep.analysis.shapes.reading), the
validation set's resolution, LR sensitivity, a starting clip value, over-aggressive clipping, and
the recommendation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sweep.analysis.boundary import (
    boundary_sentence,
    bracket_sentence,
    fit_boundary_counts,
    slice_counts,
)
from sweep.analysis.clipping import clipping_sentence, join_words, k_of_n
from sweep.analysis.metric import ACCURACY
from sweep.analysis.shapes import shape_sentences
from sweep.analysis.verdicts import (
    CLIP_FRACTION_TOO_HIGH,
    Recommendation,
    ValidationNoise,
    present,
    setting_key,
    slice_axes,
)
from sweep.core.setting import setting_label, slice_label, value_label
from sweep.core.values import nanmedian, normalize


@dataclass(frozen=True)
class Line:
    """One sentence of the verdict: its text, the figure kind it reads (report.html links
    "#fig-<figure>"; "summary" and "crashed" are the page's tables) and its topic."""

    text: str
    figure: str = ""
    topic: str = ""


def reading(
    summary: pd.DataFrame,
    slices: pd.DataFrame,
    rec: Recommendation | None,
    axes: Sequence[str],
    chance: float,
    clip_frac: pd.DataFrame | None = None,
    noise: ValidationNoise | None = None,
    runs: pd.DataFrame | None = None,
) -> str:
    """One paragraph that reads the numbers: where runs collapse, what clipping changes, what to use."""
    return " ".join(
        line.text
        for line in reading_lines(summary, slices, rec, axes, chance, clip_frac, noise, runs)
    )


def reading_lines(
    summary: pd.DataFrame,
    slices: pd.DataFrame,
    rec: Recommendation | None,
    axes: Sequence[str],
    chance: float,
    clip_frac: pd.DataFrame | None = None,
    noise: ValidationNoise | None = None,
    runs: pd.DataFrame | None = None,
    score: Any = ACCURACY,
    metric_note: str = "",
) -> list[Line]:
    """The verdict's sentences in reading order, each tagged with its figure and topic.

    `score` (`sweep.analysis.metric.Score`) names how settings are scored (mean best accuracy, or
    a loss study's mean best loss), and `metric_note` says why a study's calls read the loss (its
    first finding)."""
    if not len(summary):
        return [
            Line(
                "No completed runs yet: nothing to read. Run `sweep run` (or wait for the workers) and rebuild "
                "the report.",
                "",
                "empty",
            )
        ]
    keys = slice_axes(axes)
    by_slice: dict[tuple[Any, ...], dict[float, dict[str, Any]]] = {}
    for row in summary.to_dict("records"):
        by_slice.setdefault(setting_key(row, keys), {})[float(row["lr"])] = row
    lines: list[Line] = []

    def add(text: str, figure: str, topic: str) -> None:
        if text:
            lines.append(Line(text, figure, topic))

    add(metric_note, "learning_curves", "metric")

    quiet: list[str] = []
    bounds: dict[tuple[int, str], list[str]] = {}  # (runs, bound) -> the quiet slices it holds for
    for sl in slices.to_dict("records"):
        key = setting_key(sl, keys)
        where = slice_label(dict(zip(keys, key)))
        rows = by_slice[key]
        counts = slice_counts([rows[lr] for lr in sorted(rows)])
        fit = fit_boundary_counts(counts.lrs, counts.decided, counts.failed)
        if (
            sl["n_collapsed"] == 0 and counts.past_edge
        ):  # nothing collapsed, but high lrs learned nothing
            add(boundary_sentence(where, fit, counts), "lr_curves", "boundary")
            continue
        if sl["n_collapsed"] == 0:
            quiet.append(where)
            if fit.at_50.kind == "above":  # what no collapse in this many runs does rule out
                if not bounds:
                    add(
                        _BOUNDS, "lr_curves", "quiet"
                    )  # the place of the bounds sentence, filled in below
                bounds.setdefault((fit.n_runs, fit.at_50.text()), []).append(where)
            continue
        add(_collapse_sentence(where, sl, rows), "learning_curves", "collapse")
        add(boundary_sentence(where, fit, counts), "lr_curves", "boundary")
        add(bracket_sentence(fit), "lr_curves", "bracket")
        add(clipping_sentence(key, keys, rows, by_slice, score), "collapse_rate", "clipping")
    if bounds:
        i = next(j for j, line in enumerate(lines) if line.text == _BOUNDS)
        lines[i] = Line(
            " ".join(
                f"At {join_words(wheres)}, with no collapse in {runs} runs"
                f"{' each' if len(wheres) > 1 else ''}, the lr at 50% collapse risk is {text}."
                for (runs, text), wheres in bounds.items()
            ),
            "lr_curves",
            "quiet",
        )
    finished = int(summary["n_runs"].fillna(0).astype(int).sum()) if "n_runs" in summary else 0
    nothing_learned = (
        finished > 0
        and "n_never_learned" in summary
        and bool(
            (
                summary["n_never_learned"].fillna(0).astype(int)
                == summary["n_runs"].fillna(0).astype(int)
            ).all()
        )
    )
    if nothing_learned:
        add(
            "No run learned anything that stands out from sampling noise at any setting, so whether "
            "training collapses cannot be judged here.",
            "learning_curves",
            "quiet",
        )
    elif quiet and len(quiet) == len(slices):
        lrs = sorted(float(v) for v in summary["lr"])
        add(
            f"No run collapsed anywhere in the grid (lr={value_label(lrs[0])} to {value_label(lrs[-1])}): "
            "the grid may not reach the unstable region; larger learning rates would find the edge.",
            "collapse_rate",
            "quiet",
        )
    elif quiet:
        add(f"No run collapsed at {join_words(quiet)}.", "collapse_rate", "quiet")
    for text in _undecided_sentence(summary, keys):
        add(text, "learning_curves", "undecided")
    for text in shape_sentences(summary, runs if runs is not None else pd.DataFrame(), axes):
        add(text, "learning_curves" if "jump" in text else "volatility", "shape")
    for text in _noise_sentences(noise):
        add(text, "lr_curves", "noise")
    for text in _sensitivity_sentence(slices, keys, score):
        add(text, score.mean, "sensitivity")
    for text in _grad_norm_sentence(summary, keys):
        add(text, "grad_norms", "grad_norm")
    for text in _clip_fraction_sentence(clip_frac, axes):
        add(text, "grad_norms", "clip_fraction")
    add(crashed_sentence(runs, axes), "crashed", "crashed")
    add(_recommendation_sentence(rec, summary, axes, chance, score), "summary", "recommendation")
    if rec is not None:
        add(rec.choice_text(axes), "summary", "choice")
    return lines


# Where a failure reason's detail starts: "exit status 1: RuntimeError: ... (stderr.log ends: ...)",
# "raised ValueError: ... (traceback ends: ...)" (sweep.trainers.external, .function).
_REASON_DETAIL = re.compile(r" \((?:[\w.-]+|traceback) ends: ")


def short_reason(reason: Any, width: int) -> str:
    """A run's failure reason as the report quotes it: what ended the run and the last line the
    script wrote (not the lines before it), in at most `width` characters. A reason of several
    lines (a traceback) is quoted by its last."""
    lines = str(reason or "").strip().splitlines()
    text = " ".join(lines[-1].split()) if lines else ""
    text = _REASON_DETAIL.split(text, maxsplit=1)[0]
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def crashed_sentence(runs: pd.DataFrame | None, axes: Sequence[str]) -> str:
    """Runs that crashed or timed out: how many, which, why; they count nowhere (empty when none)."""
    if runs is None or not len(runs) or "outcome" not in runs:
        return ""
    bad = runs[runs["outcome"].isin(["crashed", "timed_out"])]
    if not len(bad):
        return ""
    named = []
    for r in bad.head(3).to_dict("records"):
        reason = short_reason(r.get("failure_reason") or r.get("crash_reason"), 100)
        what = r["outcome"].replace("_", " ") + (f": {reason}" if reason else "")
        named.append(
            f"{setting_label({a: normalize(r[a]) for a in axes}, axes)}, seed {int(r['seed'])} ({what})"
        )
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    n = len(bad)
    return (
        f"{n} run{'s' if n != 1 else ''} crashed and {'are' if n != 1 else 'is'} not counted: {'; '.join(named)}"
        f"{more}; the same command retries them."
    )


_BOUNDS = "\0bounds"  # placeholder of the sentence on slices without any collapse


def _undecided_sentence(summary: pd.DataFrame, keys: list[str]) -> list[str]:
    """Where runs fell but the data could not confirm it."""
    if "n_undecided" not in summary or not summary["n_undecided"].fillna(0).astype(int).any():
        return []
    rows = summary[summary["n_undecided"].fillna(0).astype(int) > 0]
    total = int(rows["n_undecided"].sum())
    named = [
        f"{int(r['n_undecided'])} at {setting_label({a: normalize(r[a]) for a in ['lr', *keys]})}"
        for r in rows.head(3).to_dict("records")
    ]
    more = " and more" if len(rows) > 3 else ""
    return [
        f"{total} run{'s' if total != 1 else ''} fell below the collapse threshold but not by more than "
        f"the validation set's noise, so {'they are' if total != 1 else 'it is'} counted as undecided, "
        f"neither collapsed nor stable ({'; '.join(named)}{more}); each collapse-rate interval's upper end "
        f"counts them as collapsed."
    ]


def _noise_sentences(noise: ValidationNoise | None) -> list[str]:
    if noise is None or not noise.n_val:
        return []
    out = [noise.sentence()]
    if noise.too_coarse:
        why = []
        if noise.n_hidden:
            why.append(
                f"{noise.n_hidden} of {noise.n_runs} runs beat chance but not that noise floor, so "
                f"whether they learned cannot be told"
            )
        if noise.n_undecided:
            why.append(f"{noise.n_undecided} drops could not be confirmed")
        reason = f" ({'; '.join(why)})" if why else ""
        out.append(
            f"This validation set is too small to tell small changes apart{reason}. To sharpen the "
            f"calls, use {noise.fix}."
        )
    return out


def _collapse_sentence(where: str, sl: dict[str, Any], rows: dict[float, dict[str, Any]]) -> str:
    lrs = sorted(rows)
    collapsed = [lr for lr in lrs if rows[lr]["n_collapsed"] > 0]
    counts = [f"{k_of_n(rows[lr])} runs at lr={value_label(lr)}" for lr in collapsed[:3]]
    if len(collapsed) > 3:
        counts.append("...")
    modes = _mode_counts([rows[lr] for lr in collapsed])
    detail = f"({'; '.join(counts)}; {modes})"
    if len(collapsed) == len(lrs):
        text = f"At {where}, runs collapse at every lr tried, even the smallest, lr={value_label(lrs[0])} {detail}"
    elif sl["monotone_collapse"]:
        if collapsed[0] == lrs[-1]:
            text = f"At {where}, runs collapse only at the largest lr tried, lr={value_label(lrs[-1])} {detail}"
        else:
            text = f"At {where}, runs collapse from lr={value_label(collapsed[0])} up {detail}"
        text += f"; the largest stable lr is {value_label(sl['largest_stable_lr'])}"
    else:
        spared = [lr for lr in lrs if lr > collapsed[0] and rows[lr]["n_collapsed"] == 0]
        stable = sl["largest_stable_lr"]
        text = (
            f"At {where}, runs collapse at {join_words(['lr=' + value_label(lr) for lr in collapsed])} "
            f"but not at {join_words(['lr=' + value_label(lr) for lr in spared])} {detail}; "
            + (
                f"the largest stable lr is {value_label(stable)}"
                if present(stable)
                else "no lr is stable"
            )
            + ". A non-monotone pattern like this means collapse is a matter of chance around these "
            "learning rates: more seeds would sharpen it"
        )
    return text + "."


def _sensitivity_sentence(
    slices: pd.DataFrame, keys: list[str], score: Any = ACCURACY
) -> list[str]:
    sens = [
        (float(s["lr_sensitivity"]), slice_label(dict(zip(keys, setting_key(s, keys)))))
        for s in slices.to_dict("records")
        if present(s["lr_sensitivity"]) and s["n_lrs"] > 1
    ]
    if len(sens) < 2:
        return []
    lo, hi = min(sens), max(sens)
    what = "loss added" if score.lower_is_better else "accuracy lost"
    text = f"LR sensitivity ({what}, on average over the lr grid, to a poorer lr)"
    digits = ".3g" if score.lower_is_better else ".3f"
    if hi[0] - lo[0] < 0.005 * (max(abs(hi[0]), 1.0) if score.lower_is_better else 1.0):
        return [f"{text} is about {lo[0]:{digits}} everywhere."]
    return [
        f"{text} is lowest at {lo[1]} ({lo[0]:{digits}}) and highest at {hi[1]} ({hi[0]:{digits}})."
    ]


def _grad_norm_sentence(summary: pd.DataFrame, keys: list[str]) -> list[str]:
    """The median grad_norm_p90 of stable settings as a starting clip value (most useful unclipped)."""
    stable = summary[summary["n_collapsed"] == 0]
    if "clip" in summary:
        unclipped = stable[stable["clip"].map(normalize).isna()]
        which, pool = "stable settings without clipping", unclipped
        if not len(pool):
            which, pool = "stable settings", stable
    else:
        which, pool = "stable settings", stable
    p90 = nanmedian([float(v) for v in pool["grad_norm_p90"]]) if len(pool) else math.nan
    if not math.isfinite(p90):
        return []
    return [
        f"The 90th percentile of the gradient norm before clipping (grad_norm_p90) is about {p90:.3g} "
        f"at the {which} (median), the usual starting value when choosing a clip threshold."
    ]


def _clip_fraction_sentence(clip_frac: pd.DataFrame | None, axes: Sequence[str]) -> list[str]:
    if clip_frac is None or not len(clip_frac) or "clip" not in clip_frac:
        return []
    heavy = clip_frac[
        clip_frac["clip"].map(normalize).notna()
        & (clip_frac["clip_fraction"] > CLIP_FRACTION_TOO_HIGH)
    ]
    if not len(heavy):
        return []
    heavy = heavy.sort_values("clip_fraction", ascending=False)
    named = [
        f"{setting_label({a: normalize(r[a]) for a in axes}, axes)} ({r['clip_fraction']:.0%})"
        for r in heavy.head(3).to_dict("records")
    ]
    more = f" and {len(heavy) - 3} more" if len(heavy) > 3 else ""
    return [
        f"More than half of the updates were clipped (clip_fraction) at {join_words(named)}{more}; the Tuning "
        f"Playbook considers clipping more than about 50% of updates too aggressive (the clip then acts "
        f"as a smaller learning rate): a larger clip value or a smaller lr is the better fix there."
    ]


def _recommendation_sentence(
    rec: Recommendation | None,
    summary: pd.DataFrame,
    axes: Sequence[str],
    chance: float,
    score: Any = ACCURACY,
) -> str:
    if rec is None:
        if len(summary) and int(summary["n_runs"].fillna(0).astype(int).sum()) == 0:
            return (
                "No setting is recommended: no run finished (every one crashed or timed out), so "
                "nothing can be judged yet; the runs that did not finish say why."
            )
        if (
            "n_never_learned" in summary
            and int(summary["n_never_learned"].sum()) + int(summary["n_collapsed"].sum())
            == int(summary["n_runs"].sum())
            and int(summary["n_collapsed"].sum()) == 0
        ):
            return "No setting is recommended: no run learned anything that stands out from sampling noise."
        return (
            "No setting is recommended: every setting had at least one collapsed run, or learned nothing; "
            "try smaller learning rates, gradient clipping or more seeds."
        )
    text = f"Recommended: {rec.text(axes)}."
    lrs = sorted(float(v) for v in summary["lr"])
    if len(set(lrs)) > 1 and rec.setting.get("lr") == lrs[-1]:
        text += " It is the largest lr tried: a larger one might do better still."
    if not score.lower_is_better and rec.mean_best_acc < chance + 0.05:
        text += (
            f" Note that it barely beats chance ({chance:.3f}): nothing in this grid learned much."
        )
    return text


def _mode_counts(rows: list[dict[str, Any]]) -> str:
    counts = {
        m: sum(int(r[f"n_{m}"]) for r in rows) for m in ("nonfinite", "diverged", "constant_output")
    }
    parts = [f"{n} {m}" for m, n in counts.items() if n]
    return "modes: " + ", ".join(parts) if parts else "modes: none recorded"
