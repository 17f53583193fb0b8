"""Stability verdicts: pure functions over the per-setting summary table (DESIGN.md "Definitions").

Usage::

    v = compute_verdicts(tables)          # tables from sweep.analysis
    v.slices                              # verdicts.csv: one row per (clip, batch size, extra axes)
    v.recommendation                      # best setting without any collapsed run, or None
    v.reading                             # one paragraph in plain language, generated from the numbers

A *slice* is every setting that shares all axes but the learning rate: one line of an LR curve.
Per slice: LR sensitivity (adapted from Wortsman et al. 2023) and the largest stable LR. Over the
whole grid: the recommended setting. The formatting helpers at the end (`value_label`,
`setting_label`, ...) are shared by the plots and the HTML report, so every output names values
the same way ("clip none", "lr=0.3").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

# Tuning Playbook (Google, 2023): clipping more than about half of the updates is too aggressive.
CLIP_FRACTION_TOO_HIGH = 0.5

SLICE_COLUMNS = [
    "n_lrs", "lr_min", "lr_max", "lr_sensitivity", "largest_stable_lr", "first_collapse_lr",
    "collapsed_lrs", "monotone_collapse", "best_lr", "best_mean_best_acc", "n_runs", "n_collapsed",
    "grad_norm_p90",
]


@dataclass(frozen=True)
class Recommendation:
    """The setting with the highest mean best accuracy among those with no collapsed run."""

    setting: dict[str, Any]
    mean_best_acc: float
    mean_best_acc_lo: float
    mean_best_acc_hi: float
    n_runs: int
    grad_norm_p90: float


@dataclass(frozen=True)
class ValidationNoise:
    """What the validation set's size lets the report tell apart (sweep.noise)."""

    n_val: Optional[int]  # validation sequences (None: unknown, noise not accounted for)
    resolution: float  # smallest accuracy difference told apart from noise (95%, worst case p = 0.5)
    floor: float  # the best of `epochs` epochs with nothing learned stays below this (learned test)
    chance: float
    epochs: int
    n_undecided: int  # runs whose drop neither accuracy nor loss confirmed
    n_hidden: int  # runs above chance + min_gain whose best the noise floor swallowed
    n_runs: int
    too_coarse: bool  # the validation set is too small for the question asked of it
    fix: str  # the concrete fix, in words, when too coarse

    def sentence(self) -> str:
        """The study's resolution in one sentence."""
        if not self.n_val:
            return ""
        return (f"With {self.n_val} validation sequences, accuracy differences smaller than about "
                f"{self.resolution:.2f} are within sampling noise, and with nothing learned the best of "
                f"{self.epochs} epochs still reaches up to {min(self.floor, 1.0):.3f} (chance {self.chance:.3f}); "
                f"a run counts as learned only above that.")


@dataclass
class Verdicts:
    slices: pd.DataFrame  # one row per slice: the slice axes + SLICE_COLUMNS
    recommendation: Optional[Recommendation]
    reading: str  # the plain-language paragraph
    noise: Optional[ValidationNoise] = None


# --------------------------------------------------------------------------- values and keys


def normalize(value: Any) -> Any:
    """One spelling per axis value: None for "absent" (None, NaN, pd.NA), plain Python scalars."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def setting_key(row: Any, axes: Sequence[str]) -> tuple[Any, ...]:
    """The hashable identity of a setting (a summary/runs/curves row) over `axes`."""
    return tuple(normalize(row[a]) for a in axes)


def slice_axes(axes: Sequence[str]) -> list[str]:
    """The axes that define a slice: every axis but the learning rate."""
    return [a for a in axes if a != "lr"]


# --------------------------------------------------------------------------- per-slice numbers


def lr_sensitivity(accs: Sequence[float], chance: float) -> float:
    """Mean over the LR grid of `best_over_lr - max(acc(lr), chance)` (0 when every LR is as good).

    The best is floored at chance too, so a slice where nothing learned scores 0, not a
    negative number; whenever some LR beats chance this is exactly DESIGN.md's formula.
    """
    vals = [float(a) for a in accs if a is not None and math.isfinite(float(a))]
    if not vals:
        return math.nan
    floored = [max(a, chance) for a in vals]
    best = max(floored)
    return float(np.mean([best - a for a in floored]))


def largest_stable_lr(lrs: Sequence[float], n_collapsed: Sequence[int]) -> Optional[float]:
    """The largest LR such that it and every smaller LR had no collapsed run; None if the smallest did."""
    stable = None
    for lr, k in sorted(zip(lrs, n_collapsed), key=lambda p: p[0]):
        if k > 0:
            break
        stable = float(lr)
    return stable


def slice_verdicts(summary: pd.DataFrame, axes: Sequence[str], chance: float) -> pd.DataFrame:
    """One row per slice (in grid order): LR sensitivity, largest stable LR and what collapsed where."""
    keys = slice_axes(axes)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in summary.to_dict("records"):
        groups.setdefault(setting_key(row, keys), []).append(row)
    out = []
    for key, rows in groups.items():
        rows = sorted(rows, key=lambda r: float(r["lr"]))
        lrs = [float(r["lr"]) for r in rows]
        ks = [int(r["n_collapsed"]) for r in rows]
        accs = [float(r["mean_best_acc"]) for r in rows]
        collapsed = [lr for lr, k in zip(lrs, ks) if k > 0]
        first = collapsed[0] if collapsed else None
        # Monotone: once a run collapses at some LR, every larger LR has a collapse too.
        monotone = not collapsed or all(k > 0 for lr, k in zip(lrs, ks) if lr >= first)
        finite = [(a, lr) for a, lr in zip(accs, lrs) if math.isfinite(a)]
        best_acc, best_lr = max(finite, key=lambda p: (p[0], -p[1])) if finite else (math.nan, math.nan)
        stable_p90 = [float(r["grad_norm_p90"]) for r, k in zip(rows, ks) if k == 0]
        p90 = _nanmedian(stable_p90 or [float(r["grad_norm_p90"]) for r in rows])
        out.append({
            **dict(zip(keys, key)),
            "n_lrs": len(rows),
            "lr_min": lrs[0],
            "lr_max": lrs[-1],
            "lr_sensitivity": lr_sensitivity(accs, chance),
            "largest_stable_lr": largest_stable_lr(lrs, ks),
            "first_collapse_lr": first,
            "collapsed_lrs": " ".join(value_label(lr) for lr in collapsed),
            "monotone_collapse": monotone,
            "best_lr": best_lr,
            "best_mean_best_acc": best_acc,
            "n_runs": int(sum(int(r["n_runs"]) for r in rows)),
            "n_collapsed": int(sum(ks)),
            "grad_norm_p90": p90,
        })
    return pd.DataFrame(out, columns=keys + SLICE_COLUMNS)


def recommend(summary: pd.DataFrame, axes: Sequence[str]) -> Optional[Recommendation]:
    """The setting with the highest mean best accuracy among settings with no collapsed run.

    Ties go to the higher lower bound of the interval, then to grid order. None when every
    setting had a collapse (or the table is empty).
    """
    # A setting where no seed learned anything that stands out from sampling noise has nothing
    # to recommend it, however high its mean best accuracy (a best of many noisy epochs).
    rows = [r for r in summary.to_dict("records")
            if int(r["n_collapsed"]) == 0 and _present(r["mean_best_acc"])
            and int(r.get("n_never_learned", 0) or 0) < int(r["n_runs"])]
    if not rows:
        return None
    # Records, not iloc: a row Series would turn integer axes (batch size) into floats.
    row = min(enumerate(rows), key=lambda p: (-p[1]["mean_best_acc"], -p[1]["mean_best_acc_lo"], p[0]))[1]
    return Recommendation(
        setting={a: normalize(row[a]) for a in axes},
        mean_best_acc=float(row["mean_best_acc"]),
        mean_best_acc_lo=float(row["mean_best_acc_lo"]),
        mean_best_acc_hi=float(row["mean_best_acc_hi"]),
        n_runs=int(row["n_runs"]),
        grad_norm_p90=float(row["grad_norm_p90"]),
    )


def clip_fractions(curves: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
    """Per setting: `clip_fraction`, the share of steps clipped, averaged over epochs and seeds."""
    if not len(curves):
        return pd.DataFrame(columns=list(axes) + ["clip_fraction"])
    keys = [curves[a].map(normalize) for a in axes]
    means = curves.groupby(keys, sort=False, dropna=False)["clip_fraction"].mean()
    rows = [dict(zip(axes, k if isinstance(k, tuple) else (k,)), clip_fraction=float(v)) for k, v in means.items()]
    return pd.DataFrame(rows, columns=list(axes) + ["clip_fraction"])


def validation_noise(tables: Any) -> ValidationNoise:
    """How finely the study's validation set resolves accuracy, and whether that is enough.

    Too coarse when some run was undecided, when some run's best beat chance + min_gain but not
    the noise floor (it may have learned; the data cannot tell), or when the resolution is
    wider than the drop a typical learned run would have to show to count as diverged.
    """
    from sweep.noise import resolution

    meta = getattr(tables, "meta", None) or {}
    task, config = meta.get("task") or {}, meta.get("config") or {}
    detect = meta.get("detect") or config.get("detect") or {}
    n_val = int(task["n_val"]) if task.get("n_val") else None
    runs, summary = tables.runs, tables.summary
    epochs = int(config.get("epochs") or (int(runs["epochs_run"].max()) if len(runs) else 0))
    floors = summary["noise_floor"] if "noise_floor" in summary else pd.Series(dtype=float)
    floor = float(np.nanmax(floors)) if len(floors) and np.isfinite(floors.astype(float)).any() else math.nan
    res = resolution(n_val) if n_val else math.nan
    undecided = int(runs["undecided"].astype(bool).sum()) if "undecided" in runs else 0
    min_gain = float(detect.get("min_gain", 0.05))
    hidden = 0
    if "outcome" in runs and len(runs):
        never = runs[runs["outcome"] == "never_learned"]
        hidden = int((never["best_acc"].astype(float) >= tables.chance + min_gain).sum())
    learned = runs[runs["outcome"].isin(["stable", "collapsed", "undecided"]) & (runs["collapse_mode"] != "nonfinite")] \
        if "outcome" in runs else runs.iloc[0:0]
    gain = float(np.median(learned["best_acc"].astype(float) - tables.chance)) if len(learned) else math.nan
    drop = float(detect.get("drop", 0.5))
    blurred = bool(n_val) and math.isfinite(gain) and res > drop * gain
    too_coarse = bool(n_val) and (undecided > 0 or hidden > 0 or blurred)
    return ValidationNoise(
        n_val=n_val, resolution=res, floor=floor, chance=float(tables.chance), epochs=epochs,
        n_undecided=undecided, n_hidden=hidden, n_runs=len(runs), too_coarse=too_coarse,
        fix=_noise_fix(task, config, n_val) if too_coarse else "",
    )


def _noise_fix(task: dict[str, Any], config: dict[str, Any], n_val: Optional[int]) -> str:
    """The concrete fix for a validation set too small to decide: which key gives more data."""
    tcfg = config.get("task") or {}
    four = 4 * int(n_val or 0)
    if "val_fraction" in tcfg:
        frac = float(tcfg.get("val_fraction") or 0.2)
        more = min(0.5, frac * 4)
        key = f"task.val_fraction={more:g}"
        if "val_path" in tcfg:
            key += " or a separate, larger validation file (task.val_path=...)"
        data = f"more validation data ({key})"
    elif "n_val" in tcfg:
        data = f"more validation data (task.n_val={four})"
    else:
        data = "more validation data"
    return (f"{data}: about four times the sequences ({four}) halve the noise; more seeds narrow the "
            f"collapse-rate intervals but cannot sharpen a single run's call")


def compute_verdicts(tables: Any) -> Verdicts:
    """Slices, recommendation and reading of a `sweep.analysis.Tables`."""
    axes = list(tables.axes)
    slices = slice_verdicts(tables.summary, axes, tables.chance)
    rec = recommend(tables.summary, axes)
    noise = validation_noise(tables)
    text = reading(tables.summary, slices, rec, axes, tables.chance, clip_fractions(tables.curves, axes), noise)
    return Verdicts(slices=slices, recommendation=rec, reading=text, noise=noise)


# --------------------------------------------------------------------------- the paragraph


def reading(summary: pd.DataFrame, slices: pd.DataFrame, rec: Optional[Recommendation],
            axes: Sequence[str], chance: float, clip_frac: Optional[pd.DataFrame] = None,
            noise: Optional[ValidationNoise] = None) -> str:
    """One paragraph that reads the numbers: where runs collapse, what clipping changes, what to use."""
    if not len(summary):
        return "No completed runs yet: nothing to read. Run `sweep run` (or wait for the workers) and rebuild the report."
    keys = slice_axes(axes)
    by_slice: dict[tuple[Any, ...], dict[float, dict[str, Any]]] = {}
    for row in summary.to_dict("records"):
        by_slice.setdefault(setting_key(row, keys), {})[float(row["lr"])] = row
    sentences: list[str] = []
    quiet: list[str] = []
    for sl in slices.to_dict("records"):
        key = setting_key(sl, keys)
        where = slice_label(dict(zip(keys, key)))
        rows = by_slice[key]
        if sl["n_collapsed"] == 0:
            quiet.append(where)
            continue
        sentences.append(_collapse_sentence(where, sl, rows))
        helped = _clipping_sentence(key, keys, rows, by_slice)
        if helped:
            sentences.append(helped)
    nothing_learned = "n_never_learned" in summary and bool(
        (summary["n_never_learned"].fillna(0).astype(int) == summary["n_runs"].astype(int)).all())
    if nothing_learned:
        sentences.append("No run learned anything that stands out from sampling noise at any setting, so whether "
                         "training collapses cannot be judged here.")
    elif quiet and len(quiet) == len(slices):
        lrs = sorted(float(v) for v in summary["lr"])
        sentences.append(
            f"No run collapsed anywhere in the grid (lr={value_label(lrs[0])} to {value_label(lrs[-1])}): "
            "the grid may not reach the unstable region; larger learning rates would find the edge."
        )
    elif quiet:
        sentences.append(f"No run collapsed at {_join(quiet)}.")
    sentences.extend(_undecided_sentence(summary, keys))
    sentences.extend(_noise_sentences(noise))
    sentences.extend(_sensitivity_sentence(slices, keys))
    sentences.extend(_grad_norm_sentence(summary, keys))
    sentences.extend(_clip_fraction_sentence(clip_frac, axes))
    sentences.append(_recommendation_sentence(rec, summary, axes, chance))
    return " ".join(s for s in sentences if s)


def _undecided_sentence(summary: pd.DataFrame, keys: list[str]) -> list[str]:
    """Where runs fell but the data could not confirm it."""
    if "n_undecided" not in summary or not summary["n_undecided"].fillna(0).astype(int).any():
        return []
    rows = summary[summary["n_undecided"].fillna(0).astype(int) > 0]
    total = int(rows["n_undecided"].sum())
    named = [f"{int(r['n_undecided'])} at {setting_label({a: normalize(r[a]) for a in ['lr', *keys]})}"
             for r in rows.head(3).to_dict("records")]
    more = " and more" if len(rows) > 3 else ""
    return [f"{total} run{'s' if total != 1 else ''} fell below the collapse threshold but not by more than "
            f"the validation set's noise, so {'they are' if total != 1 else 'it is'} counted as undecided, "
            f"neither collapsed nor stable ({'; '.join(named)}{more}); each collapse-rate interval's upper end "
            f"counts them as collapsed."]


def _noise_sentences(noise: Optional[ValidationNoise]) -> list[str]:
    if noise is None or not noise.n_val:
        return []
    out = [noise.sentence()]
    if noise.too_coarse:
        why = []
        if noise.n_hidden:
            why.append(f"{noise.n_hidden} of {noise.n_runs} runs beat chance but not that noise floor, so "
                       f"whether they learned cannot be told")
        if noise.n_undecided:
            why.append(f"{noise.n_undecided} drops could not be confirmed")
        reason = f" ({'; '.join(why)})" if why else ""
        out.append(f"This validation set is too small to tell small changes apart{reason}. To sharpen the "
                   f"calls, use {noise.fix}.")
    return out


def _collapse_sentence(where: str, sl: dict[str, Any], rows: dict[float, dict[str, Any]]) -> str:
    lrs = sorted(rows)
    collapsed = [lr for lr in lrs if rows[lr]["n_collapsed"] > 0]
    counts = [f"{_k_of_n(rows[lr])} runs at lr={value_label(lr)}" for lr in collapsed[:3]]
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
            f"At {where}, runs collapse at {_join(['lr=' + value_label(lr) for lr in collapsed])} "
            f"but not at {_join(['lr=' + value_label(lr) for lr in spared])} {detail}; "
            + (f"the largest stable lr is {value_label(stable)}" if _present(stable) else "no lr is stable")
            + ". A non-monotone pattern like this means collapse is a matter of chance around these "
            "learning rates: more seeds would sharpen it"
        )
    return text + "."


def _clipping_sentence(key: tuple[Any, ...], keys: list[str], rows: dict[float, dict[str, Any]],
                       by_slice: dict[tuple[Any, ...], dict[float, dict[str, Any]]]) -> str:
    """What each clip value does at the LRs where this unclipped slice collapses."""
    if "clip" not in keys or key[keys.index("clip")] is not None:
        return ""
    ci = keys.index("clip")
    bad = [lr for lr in sorted(rows) if rows[lr]["n_collapsed"] > 0]
    parts = []
    for other, orows in by_slice.items():
        if other[ci] is None or other[:ci] + other[ci + 1:] != key[:ci] + key[ci + 1:]:
            continue
        clip = value_label(other[ci])
        kept = [lr for lr in bad if lr in orows and orows[lr]["n_collapsed"] == 0]
        fewer = [lr for lr in bad if lr in orows and 0 < orows[lr]["n_collapsed"] and
                 orows[lr]["collapse_rate"] < rows[lr]["collapse_rate"]]
        if kept:
            lr = kept[-1]
            r = orows[lr]
            parts.append(
                f"clipping at {clip} keeps lr={value_label(lr)} stable ({_k_of_n(r)} collapsed, "
                f"mean best accuracy {r['mean_best_acc']:.3f})"
            )
        elif fewer:
            lr = fewer[-1]
            parts.append(f"clipping at {clip} lowers collapse at lr={value_label(lr)} to {_k_of_n(orows[lr])} runs")
        elif bad and all(lr in orows for lr in bad):
            parts.append(f"clipping at {clip} does not prevent it")
    if not parts:
        return ""
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def _sensitivity_sentence(slices: pd.DataFrame, keys: list[str]) -> list[str]:
    sens = [(float(s["lr_sensitivity"]), slice_label(dict(zip(keys, setting_key(s, keys)))))
            for s in slices.to_dict("records") if _present(s["lr_sensitivity"]) and s["n_lrs"] > 1]
    if len(sens) < 2:
        return []
    lo, hi = min(sens), max(sens)
    if hi[0] - lo[0] < 0.005:
        return [f"LR sensitivity (accuracy lost, on average over the lr grid, to a poorer lr) is about "
                f"{lo[0]:.3f} everywhere."]
    return [f"LR sensitivity (accuracy lost, on average over the lr grid, to a poorer lr) is lowest at "
            f"{lo[1]} ({lo[0]:.3f}) and highest at {hi[1]} ({hi[0]:.3f})."]


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
    p90 = _nanmedian([float(v) for v in pool["grad_norm_p90"]]) if len(pool) else math.nan
    if not math.isfinite(p90):
        return []
    return [f"The 90th percentile of the gradient norm before clipping (grad_norm_p90) is about {p90:.3g} "
            f"at the {which} (median), the usual starting value when choosing a clip threshold."]


def _clip_fraction_sentence(clip_frac: Optional[pd.DataFrame], axes: Sequence[str]) -> list[str]:
    if clip_frac is None or not len(clip_frac) or "clip" not in clip_frac:
        return []
    heavy = clip_frac[clip_frac["clip"].map(normalize).notna() & (clip_frac["clip_fraction"] > CLIP_FRACTION_TOO_HIGH)]
    if not len(heavy):
        return []
    heavy = heavy.sort_values("clip_fraction", ascending=False)
    named = [f"{setting_label({a: normalize(r[a]) for a in axes}, axes)} ({r['clip_fraction']:.0%})"
             for r in heavy.head(3).to_dict("records")]
    more = f" and {len(heavy) - 3} more" if len(heavy) > 3 else ""
    return [f"More than half of the updates were clipped (clip_fraction) at {_join(named)}{more}; the Tuning "
            f"Playbook considers clipping more than about 50% of updates too aggressive (the clip then acts "
            f"as a smaller learning rate): a larger clip value or a smaller lr is the better fix there."]


def _recommendation_sentence(rec: Optional[Recommendation], summary: pd.DataFrame, axes: Sequence[str],
                             chance: float) -> str:
    if rec is None:
        if "n_never_learned" in summary and int(summary["n_never_learned"].sum()) + int(summary["n_collapsed"].sum()) \
                == int(summary["n_runs"].sum()) and int(summary["n_collapsed"].sum()) == 0:
            return "No setting is recommended: no run learned anything that stands out from sampling noise."
        return ("No setting is recommended: every setting had at least one collapsed run, or learned nothing; "
                "try smaller learning rates, gradient clipping or more seeds.")
    text = (
        f"Recommended: {setting_label(rec.setting, axes)}: mean best accuracy {rec.mean_best_acc:.3f} "
        f"(95% CI {rec.mean_best_acc_lo:.3f}-{rec.mean_best_acc_hi:.3f}) over {rec.n_runs} "
        f"seed{'s' if rec.n_runs != 1 else ''}, no collapse."
    )
    lrs = sorted(float(v) for v in summary["lr"])
    if len(set(lrs)) > 1 and rec.setting.get("lr") == lrs[-1]:
        text += " It is the largest lr tried: a larger one might do better still."
    if rec.mean_best_acc < chance + 0.05:
        text += f" Note that it barely beats chance ({chance:.3f}): nothing in this grid learned much."
    return text


# --------------------------------------------------------------------------- shared labels


def value_label(value: Any) -> str:
    """An axis value as the report prints it: 0.3, 1, none (no clipping / absent)."""
    value = normalize(value)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def slice_label(values: dict[str, Any]) -> str:
    """A slice in words: "batch size 32 without clipping", "... with clipping at 1"."""
    parts = []
    if "batch_size" in values:
        parts.append(f"batch size {value_label(values['batch_size'])}")
    if "clip" in values:
        clip = normalize(values["clip"])
        parts.append("without clipping" if clip is None else f"with clipping at {value_label(clip)}")
    extra = [f"{k}={value_label(v)}" for k, v in values.items() if k not in ("lr", "clip", "batch_size")]
    text = " ".join(parts)
    return ", ".join([text, *extra]) if text else ", ".join(extra)


def setting_label(setting: dict[str, Any], axes: Optional[Sequence[str]] = None) -> str:
    """A setting in words: "lr=0.3, clip 1, batch size 32, model.hidden_size=64"."""
    axes = list(axes) if axes is not None else list(setting)
    parts = []
    for a in axes:
        if a not in setting:
            continue
        if a == "clip":
            parts.append(f"clip {value_label(setting[a])}")
        elif a == "batch_size":
            parts.append(f"batch size {value_label(setting[a])}")
        else:
            parts.append(f"{a}={value_label(setting[a])}")
    return ", ".join(parts)


def _k_of_n(row: dict[str, Any]) -> str:
    return f"{int(row['n_collapsed'])}/{int(row['n_runs'])}"


def _mode_counts(rows: list[dict[str, Any]]) -> str:
    counts = {m: sum(int(r[f"n_{m}"]) for r in rows) for m in ("nonfinite", "diverged", "constant_output")}
    parts = [f"{n} {m}" for m, n in counts.items() if n]
    return "modes: " + ", ".join(parts) if parts else "modes: none recorded"


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _present(v: Any) -> bool:
    return normalize(v) is not None


def _nanmedian(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(vals)) if vals else math.nan
