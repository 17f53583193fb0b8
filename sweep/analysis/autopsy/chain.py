"""The chain of mechanisms of one collapsed run, its cause, and the columns they fill.

Usage::

    a = autopsy(curves, collapse_epoch=12, collapse_mode="diverged", nonfinite_origin="")
    a.chain          # ["gradient_cliff", "saturation", "output_collapse"]
    a.cause, a.cause_epoch, a.evidence, a.missing
    autopsy_columns(curves, verdict, origin)   # runs.csv: collapse_chain, collapse_cause, ...

The chain holds each mechanism whose rule holds (sweep.analysis.autopsy.onsets) at an epoch from
BEFORE epochs before the collapse to AFTER epochs after it, once, at its first such epoch, in
time order; mechanisms that begin in the same epoch are ordered by what drives what (a step too
large, then a gradient cliff, then saturation, then an output collapse). A `nonfinite` collapse
ends with `nonfinite` (and its `nonfinite_origin`; with neither an origin nor a mechanism before
it, the chain is `undetermined>nonfinite`: the curves show that it blew up, not why; saturation
and an output collapse from the NaN's epoch on are left out, being read on a model that holds the
NaN). A
`constant_output` collapse ends with `output_collapse` (its evidence: the predictions at the
end). A chain with nothing before those ends is that end alone. A collapse without any of these
is `undetermined`, and `missing` names the signals the run did not record (what would settle
it). Runs that did not collapse get none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sweep.analysis.autopsy.onsets import MECHANISMS, Onset, missing_signals, onsets

BEFORE = 3  # epochs before the collapse where its mechanisms are looked for
AFTER = 3  # ... and after it (what the collapse led to)
CAUSES = (*MECHANISMS, "nonfinite", "undetermined")  # the vocabulary, in causal order
READ_AFTER_NAN = ("saturation", "output_collapse")  # read on the model after the epoch's steps
CAUSE_COLUMNS = tuple(f"n_cause_{c}" for c in CAUSES)  # summary.csv: runs per cause, per setting
AUTOPSY_COLUMNS = (
    "collapse_chain",
    "collapse_cause",
    "cause_epoch",
    "cause_evidence",
    "cause_size",
    "nonfinite_origin",
    "missing_signals",
)


@dataclass(frozen=True)
class Autopsy:
    """What one collapsed run's curves say about why it collapsed."""

    steps: list[Onset] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    origin: str = ""

    @property
    def chain(self) -> list[str]:
        return [s.mechanism for s in self.steps]

    @property
    def cause(self) -> str:
        return self.steps[0].mechanism if self.steps else ""

    @property
    def cause_epoch(self) -> int | None:
        return self.steps[0].epoch if self.steps else None

    @property
    def evidence(self) -> str:
        return self.steps[0].evidence if self.steps else ""


def autopsy(
    curves: Mapping[str, Sequence[float]],
    collapse_epoch: int | None,
    collapse_mode: str,
    nonfinite_origin: str = "",
) -> Autopsy:
    """The chain of a collapsed run (an empty Autopsy for a run that did not collapse)."""
    if not collapse_mode or collapse_epoch is None:
        return Autopsy()
    ce = int(collapse_epoch)
    lo, hi = ce - BEFORE, ce + AFTER
    steps = []
    for found in onsets(curves).values():
        inside = [o for o in found if lo <= o.epoch <= hi]
        if inside:
            steps.append(inside[0])
    steps.sort(key=lambda o: (o.epoch, CAUSES.index(o.mechanism)))
    if collapse_mode == "constant_output":
        steps = [s for s in steps if s.mechanism != "output_collapse"] + [
            _constant_output(curves, ce, steps)
        ]
    missing = missing_signals(curves)
    if collapse_mode == "nonfinite":
        # What the probe and the predictions show from the NaN's epoch on was read from a model
        # that holds it (a NaN's argmax is class 0 for every input): not what led to it.
        steps = [s for s in steps if s.mechanism not in READ_AFTER_NAN or s.epoch < ce]
        if not steps and not nonfinite_origin:  # a NaN/inf, but neither where nor what led to it
            steps = [Onset("undetermined", ce, math.nan, "a NaN/inf from an unknown origin")]
            missing.append("nonfinite_origin")
        origin = f" in {nonfinite_origin}" if nonfinite_origin else ""
        steps.append(Onset("nonfinite", ce, math.nan, f"NaN/inf{origin}"))
    if not steps:
        steps = [Onset("undetermined", ce, math.nan, "no signal cleared its noise")]
    return Autopsy(steps=steps, missing=missing, origin=nonfinite_origin or "")


def _constant_output(curves: Mapping[str, Sequence[float]], ce: int, steps: list[Onset]) -> Onset:
    """The end of a constant_output collapse: where the rule found it, else where the top
    class's share first reached its final level's half-way mark from the collapse window on."""
    found = [s for s in steps if s.mechanism == "output_collapse"]
    if found:
        return found[0]
    top = np.asarray(curves.get("pred_top_frac", []), dtype=float)
    final = float(top[-1]) if len(top) and np.isfinite(top[-1]) else math.nan
    epoch = ce
    for i in range(max(0, ce - 1 - BEFORE), len(top)):
        if np.isfinite(top[i]) and top[i] >= 0.5 * (1.0 + final) - 1e-9:
            epoch = i + 1
            break
    return Onset("output_collapse", max(epoch, ce), final, f"pred_top_frac {final:.2f} at the end")


def autopsy_columns(
    curves: Mapping[str, Sequence[float]], verdict: Any, nonfinite_origin: str | None = None
) -> dict[str, Any]:
    """The runs.csv columns of one run (empty for a run that did not collapse). `verdict` has
    `collapsed`, `collapse_epoch` and `collapse_mode` (sweep.analysis.detection.RunVerdict)."""
    if not getattr(verdict, "collapsed", False):
        return empty_columns(nonfinite_origin)
    a = autopsy(curves, verdict.collapse_epoch, verdict.collapse_mode, str(nonfinite_origin or ""))
    return {
        "collapse_chain": ">".join(a.chain),
        "collapse_cause": a.cause,
        "cause_epoch": a.cause_epoch,
        "cause_evidence": a.evidence,
        "cause_size": a.steps[0].size if a.steps else math.nan,
        "nonfinite_origin": a.origin,
        "missing_signals": ",".join(a.missing) if a.cause == "undetermined" else "",
    }


def empty_columns(nonfinite_origin: str | None = None) -> dict[str, Any]:
    """The autopsy columns of a run that did not collapse (or did not finish)."""
    return {
        "collapse_chain": "",
        "collapse_cause": "",
        "cause_epoch": None,
        "cause_evidence": "",
        "cause_size": math.nan,
        "nonfinite_origin": "",
        "missing_signals": "",
    }


def cause_counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """summary.csv's n_cause_<cause> for the run rows of one setting."""
    causes = [str(r.get("collapse_cause") or "") for r in rows]
    return {column: causes.count(c) for column, c in zip(CAUSE_COLUMNS, CAUSES)}
