"""The verdict a person reads in ten seconds: the answer first, then one short line per finding.

Usage::

    head, findings = verdict_lines(summary, slices, rec, axes, lines)   # lines: reading_lines(...)
    verdict_text(study, head, findings)                                 # verdict.txt and the terminal

The answer (`head`) is at most three lines: the safe LR of each slice with its lr_at_10 (where a
boundary was located; slices without any collapse are named as such), the recommended setting,
and what clipping changes. Every other sentence of the reading is a finding, with the figure it
reads, in the reading's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from sweep.analysis.autopsy import mechanism_lines
from sweep.analysis.boundary import slice_boundary
from sweep.analysis.reading import Line
from sweep.analysis.recommendation import Recommendation
from sweep.core.setting import Setting, slice_label, value_label

HEAD_TOPICS = ("recommendation", "clipping")  # reading sentences that the answer carries
MAX_SLICES = 4  # safe-LR statements in the first line; more slices: see verdicts.csv

FIGURE_FILES = {
    "collapse_rate": "figures/collapse_rate.png",
    "mean_best_acc": "figures/mean_best_acc.png",
    "mean_best_loss": "figures/mean_best_loss.png",
    "lr_curves": "figures/lr_curves.png",
    "learning_curves": "figures/learning_curves*.png",
    "grad_norms": "figures/grad_norms*.png",
    "autopsy": "figures/autopsy/*.png",
    "volatility": "figures/volatility.png",
    "summary": "summary.csv",
    "crashed": "runs.csv",
}


def safe_line(summary: pd.DataFrame, axes: Sequence[str]) -> Line | None:
    """ "Safe lr: at ..., lr <= 0.14 keeps the collapse risk under 10% (...); the risk reaches 10% at
    lr 0.3 (95% CI ...)." for each slice with a located boundary, slices without one named."""
    keys = [a for a in axes if a != "lr"]
    slices: dict[tuple, list[dict[str, Any]]] = {}
    for r in summary.to_dict("records"):
        slices.setdefault(Setting.of(r, keys).values(keys), []).append(r)
    located, quiet = [], []
    for key, rows in slices.items():
        fit = slice_boundary(rows)
        where = slice_label(dict(zip(keys, key))) or "the grid"
        if fit.n_runs == 0:
            continue
        if fit.n_collapsed == 0:
            quiet.append((where, fit))
            continue
        located.append(
            f"at {where}, {fit.safe.text()}; the risk reaches 10% at lr {fit.at_10.text()}"
        )
    parts = located[:MAX_SLICES]
    if len(located) > MAX_SLICES:
        parts.append(f"{len(located) - MAX_SLICES} more slices in verdicts.csv")
    if quiet:
        wheres = ", ".join(w for w, _ in quiet[:3]) + (
            f" and {len(quiet) - 3} more" if len(quiet) > 3 else ""
        )
        runs = {f.n_runs for _, f in quiet}
        top = max(f.lr_max for _, f in quiet)
        each = " each" if len(quiet) > 1 else ""
        n = f"{runs.pop()}" if len(runs) == 1 else "their"
        parts.append(
            f"at {wheres} no run collapsed ({n} runs{each}, up to lr {value_label(top)}), so no boundary is "
            f"located there"
        )
    if not parts:
        return None
    text = "; ".join(parts)
    return Line(f"Safe lr: {text}.", "lr_curves", "safe")


def verdict_lines(
    summary: pd.DataFrame,
    rec: Recommendation | None,
    axes: Sequence[str],
    lines: Sequence[Line],
    runs: pd.DataFrame | None = None,
) -> tuple[list[Line], list[Line]]:
    """(the answer, the findings) from the summary and the reading's tagged sentences; with
    `runs`, the findings name why each slice's runs collapsed (sweep.analysis.autopsy)."""
    head: list[Line] = []
    if not len(summary):
        return [lines[0]] if lines else [], []
    safe = safe_line(summary, axes)
    if safe is not None:
        head.append(safe)
    head += [line for line in lines if line.topic == "recommendation"]
    clipping = [line.text for line in lines if line.topic == "clipping"]
    if clipping:
        head.append(Line(" ".join(clipping), "collapse_rate", "clipping"))
    findings = [line for line in lines if line.topic not in HEAD_TOPICS]
    findings[:0] = mechanism_lines(runs, summary, axes)  # why it collapsed, first
    return head, findings


def verdict_text(study: str, head: Sequence[Line], findings: Sequence[Line]) -> str:
    """The verdict as plain text: the answer, then one line per finding with the file it reads."""
    out = [f"Verdict for {study}:"]
    out += [f"  {line.text}" for line in head]
    if findings:
        out.append("Findings:")
        for line in findings:
            where = FIGURE_FILES.get(line.figure)
            out.append(f"  - {line.text}" + (f" [{where}]" if where else ""))
    return "\n".join(out) + "\n"
