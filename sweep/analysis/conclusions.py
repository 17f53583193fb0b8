"""What a sweep concludes: the per-slice verdicts, the recommendation, the validation set's
resolution and the verdict text, from the tables.

Usage::

    v = compute_verdicts(tables)          # tables from sweep.analysis.tables
    v.slices                              # verdicts.csv: one row per (clip, batch size, extra axes)
    v.recommendation                      # within noise of the best, farthest below the safe lr; or None
    v.head, v.findings                    # the answer (safe lr, recommendation, clipping), then one line per finding
    v.text(study)                         # the same as plain text (verdict.txt, the end of `sweep run`)
    v.reading                             # every sentence as one paragraph (sweep.analysis.reading)
    v.noise                               # what the validation set's size lets the report tell apart
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sweep.analysis.headline import verdict_lines, verdict_text
from sweep.analysis.metric import MetricChoice
from sweep.analysis.reading import Line, reading_lines
from sweep.analysis.start import start_lines
from sweep.analysis.verdicts import (
    Recommendation,
    ValidationNoise,
    clip_fractions,
    recommend,
    slice_verdicts,
    validation_noise,
)


@dataclass
class Verdicts:
    slices: pd.DataFrame  # one row per slice: the slice axes + SLICE_COLUMNS
    recommendation: Recommendation | None
    reading: str  # the plain-language paragraph
    noise: ValidationNoise | None = None
    head: list[Line] = field(default_factory=list)  # the answer: safe lr, recommendation, clipping
    findings: list[Line] = field(default_factory=list)  # one line per finding, with its figure

    def text(self, study: str = "the study") -> str:
        """The verdict as plain text (verdict.txt, printed at the end of `sweep run`)."""
        return verdict_text(study, self.head, self.findings)


def compute_verdicts(tables: Any) -> Verdicts:
    """Slices, recommendation and reading of a `sweep.analysis.Tables`."""
    axes = list(tables.axes)
    metric = getattr(tables, "metric", None) or MetricChoice()
    score = metric.score
    task = (getattr(tables, "meta", None) or {}).get("task") or {}
    slices = slice_verdicts(
        tables.summary, axes, tables.chance, score=score, reference=task.get("chance_loss")
    )
    noise = validation_noise(tables)
    if metric.is_loss:  # the validation set's binomial resolution is the accuracy's, not the loss's
        noise = dataclasses.replace(noise, n_val=None, too_coarse=False, fix="")
    rec = recommend(tables.summary, axes, runs=tables.runs, n_val=noise.n_val, score=score)
    lines = reading_lines(
        tables.summary,
        slices,
        rec,
        axes,
        tables.chance,
        clip_fractions(tables.curves, axes),
        noise,
        runs=tables.runs,
        score=score,
        metric_note=metric.note,
    )
    head, findings = verdict_lines(tables.summary, rec, axes, lines, runs=tables.runs)
    head = start_lines(tables) + head  # a sweep from a checkpoint: where, and the original setting
    return Verdicts(
        slices=slices,
        recommendation=rec,
        reading=" ".join(line.text for line in lines),
        noise=noise,
        head=head,
        findings=findings,
    )
