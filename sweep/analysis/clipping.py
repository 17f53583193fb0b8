"""What clipping does at the learning rates where a slice collapses without it: the verdict's
clipping sentence (sweep.analysis.reading), in the units the study is scored in.

Usage: ``clipping_sentence(key, keys, rows, by_slice, score)`` -> "Clipping at 1 keeps lr=1
stable (0/5 collapsed, mean best accuracy 0.880)." or "" (pure function of the summary rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sweep.analysis.metric import ACCURACY
from sweep.analysis.verdicts import present
from sweep.core.setting import value_label


def clipping_sentence(
    key: tuple[Any, ...],
    keys: list[str],
    rows: dict[float, dict[str, Any]],
    by_slice: dict[tuple[Any, ...], dict[float, dict[str, Any]]],
    score: Any = ACCURACY,
) -> str:
    """What each clip value does at the LRs where this unclipped slice collapses."""
    if "clip" not in keys or key[keys.index("clip")] is not None:
        return ""
    ci = keys.index("clip")
    bad = [lr for lr in sorted(rows) if rows[lr]["n_collapsed"] > 0]
    parts = []
    for other, orows in by_slice.items():
        if other[ci] is None or other[:ci] + other[ci + 1 :] != key[:ci] + key[ci + 1 :]:
            continue
        clip = value_label(other[ci])
        kept = [lr for lr in bad if lr in orows and orows[lr]["n_collapsed"] == 0]
        fewer = [
            lr
            for lr in bad
            if lr in orows
            and 0 < orows[lr]["n_collapsed"]
            and orows[lr]["collapse_rate"] < rows[lr]["collapse_rate"]
        ]
        if kept:
            parts.append(_kept_sentence(clip, kept, orows, score))
        elif fewer:
            lr = fewer[-1]
            parts.append(
                f"clipping at {clip} lowers collapse at lr={value_label(lr)} to {k_of_n(orows[lr])} runs"
            )
        elif bad and all(lr in orows for lr in bad):
            parts.append(f"clipping at {clip} does not prevent it")
    if not parts:
        return ""
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def _n(row: dict[str, Any], column: str) -> int:
    value = row.get(column)
    return int(value) if present(value) else 0


def _score(row: dict[str, Any], score: Any) -> str:
    """A setting's score as the verdict writes it: 0.984 (accuracy), or 4 digits of a loss."""
    value = row.get(score.mean)
    if not present(value):
        return "n/a"
    return f"{float(value):.4g}" if score.lower_is_better else f"{float(value):.3f}"


def _kept_sentence(
    clip: str, kept: list[float], rows: dict[float, dict[str, Any]], score: Any = ACCURACY
) -> str:
    """What clipping at `clip` does at the lrs `kept` (no collapse with it, some without): keeps
    them stable where its runs learned, and says so where they never learned (clipping kept them
    from blowing up, but nothing was learned: that is no stable setting)."""
    learned = [lr for lr in kept if _n(rows[lr], "n_never_learned") < _n(rows[lr], "n_runs")]
    nothing = [lr for lr in kept if lr not in learned]
    parts = []
    if learned:
        lr = learned[-1]
        r = rows[lr]
        never, undecided = _n(r, "n_never_learned"), _n(r, "n_undecided")
        caveat = "".join(
            f", {k}/{_n(r, 'n_runs')} {what}"
            for k, what in ((never, "never learned"), (undecided, "undecided"))
            if k
        )
        does = "stable" if not never and not undecided else "from collapsing"
        parts.append(
            f"clipping at {clip} keeps lr={value_label(lr)} {does} ({k_of_n(r)} collapsed{caveat}, "
            f"{score.label} {_score(r, score)})"
        )
    nothing = [lr for lr in nothing if not learned or lr > learned[-1]][-3:]
    if nothing:
        where = join_words(["lr=" + value_label(lr) for lr in nothing])
        accs = ", ".join(_score(rows[lr], score) for lr in nothing)
        runs = sum(_n(rows[lr], "n_runs") for lr in nothing)
        parts.append(
            f"{'at' if learned else f'clipping at {clip} stops the collapse at'} {where}"
            f"{' it stops the collapse' if learned else ''}, but nothing is learned there "
            f"({runs}/{runs} runs never learned, {score.label} {accs})"
        )
    return "; ".join(parts)


def k_of_n(row: dict[str, Any]) -> str:
    return f"{int(row['n_collapsed'])}/{int(row['n_runs'])}"


def join_words(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
