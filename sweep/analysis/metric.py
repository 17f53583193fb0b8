"""Which curve the collapse calls of a study read: the validation accuracy, or the loss (pure
functions of the run records; no torch).

Usage::

    choice = choose_metric(records, asked="auto", n_val=360, chance=0.1, detect=detect)
    choice.curve   # "val_acc", "val_loss" or "train_loss"
    choice.note    # one line saying why the calls read the loss ("" for the accuracy as usual)

The accuracy is read where it can be judged and means something: every finished run logged one,
the validation size and chance level are known (the accuracy calls test against its sampling
noise), and it follows the training. Otherwise the calls read the loss: the validation loss
when the runs logged one, else the training loss ("no validation set"). The choice is made once
per study, so that every setting is compared on the same curve.

An accuracy that does not follow the training (Keras's "accuracy" on a regression: 0 while the
loss falls) is recognised: the accuracy rose above what guessing scores in no run (`detect_run`'s
never-learned call, or, with no chance level, an accuracy that never moved by 0.02), while the
loss clearly learned in some (`detect_loss_run`: its best lies below the loss of knowing nothing
by more than its noise). One run where the accuracy follows the training keeps it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sweep.analysis.detection import detect_run

CURVES = ("val_acc", "val_loss", "train_loss")
LOSS_CURVES = ("val_loss", "train_loss")
# With no chance level to judge it by, an accuracy that never moves by this much over a run whose
# loss learned does not follow the training (a regression's exact-match "accuracy").
FLAT_ACCURACY = 0.02


@dataclass(frozen=True)
class Score:
    """How a study scores a setting: the summary and runs columns, their words, their direction.

    `oriented(v)` turns a value into "higher is better" (a loss is negated), so that the code
    that picks the best setting reads the same for both."""

    mean: str = "mean_best_acc"  # summary.csv column (with _lo, _hi)
    run: str = "best_acc"  # runs.csv column
    label: str = "mean best accuracy"
    lower_is_better: bool = False

    @property
    def lo(self) -> str:
        return f"{self.mean}_lo"

    @property
    def hi(self) -> str:
        return f"{self.mean}_hi"

    @property
    def is_loss(self) -> bool:
        return self.lower_is_better

    def oriented(self, value: float) -> float:
        return -float(value) if self.lower_is_better else float(value)


ACCURACY = Score()


@dataclass(frozen=True)
class MetricChoice:
    """The curve every call of a study reads, and why (one line, empty for the usual accuracy)."""

    curve: str = "val_acc"
    note: str = ""

    @property
    def is_loss(self) -> bool:
        return self.curve != "val_acc"

    @property
    def label(self) -> str:
        return {"val_acc": "accuracy", "val_loss": "validation loss"}.get(
            self.curve, "training loss"
        )

    @property
    def score(self) -> Score:
        """How settings are scored: mean best accuracy, or mean best (lowest) loss."""
        if not self.is_loss:
            return ACCURACY
        return Score("mean_best_loss", "best_loss", f"mean best {self.label}", True)


def _values(record: dict[str, Any], curve: str) -> np.ndarray:
    return np.asarray(record["curves"].get(curve, ()), dtype=float)


def _has(record: dict[str, Any], curve: str) -> bool:
    return bool(np.isfinite(_values(record, curve)).any())


def loss_curve(records: Sequence[dict[str, Any]]) -> str:
    """The loss the calls read: the validation loss when any run logged one, else training's."""
    return "val_loss" if any(_has(r, "val_loss") for r in records) else "train_loss"


def _loss_learned(record: dict[str, Any], curve: str, detect: Any) -> bool:
    from sweep.analysis.loss_detection import detect_loss_run

    v = detect_loss_run(
        _values(record, curve).tolist(),
        detect=detect,
        nonfinite_epoch=record.get("nonfinite_epoch"),
        chance_loss=record.get("chance_loss"),
    )
    return not v.never_learned and v.outcome != "never_learned"


def accuracy_follows(
    record: dict[str, Any], n_val: int | None, chance: float | None, detect: Any
) -> bool:
    """Whether a run's accuracy rose above guessing (or, without a chance level, moved at all)."""
    acc = _values(record, "val_acc")
    finite = acc[np.isfinite(acc)]
    if not finite.size:
        return False
    if chance is None:
        return float(finite.max() - finite.min()) >= FLAT_ACCURACY
    v = detect_run(
        acc.tolist(),
        _values(record, "val_loss").tolist(),
        _values(record, "pred_top_frac").tolist(),
        None,  # a non-finite end says nothing about what the accuracy measures
        chance,
        detect,
        n_val=n_val,
    )
    return not v.never_learned


def choose_metric(
    records: Sequence[dict[str, Any]],
    asked: str,
    n_val: int | None,
    chance: float | None,
    detect: Any,
) -> MetricChoice:
    """The curve of a study's calls (see the module docstring).

    Args:
        records: the decoded run records (crashed and timed-out runs are passed over).
        asked: "acc", "loss" or "auto" (trainer.metric, else detect.metric).
        n_val, chance: the validation size and chance level, where known (the study's, or a
            record's own `n_val` / `chance`).
        detect: the detection thresholds.
    """
    finished = [r for r in records if not r.get("failure")]
    loss = loss_curve(finished)
    why_loss = "no validation set" if loss == "train_loss" else ""
    if asked == "acc":
        return MetricChoice("val_acc")
    if asked == "loss":
        return MetricChoice(loss, _note(loss, why_loss or "detect.metric=loss"))
    if not finished:
        return MetricChoice("val_acc")
    if not all(_has(r, "val_acc") for r in finished):
        return MetricChoice(loss, _note(loss, why_loss or "the runs log no accuracy"))

    def facts(r: dict[str, Any]) -> tuple[int | None, float | None]:
        return (r.get("n_val") or n_val), (
            r.get("chance") if r.get("chance") is not None else chance
        )

    known = all(f[0] is not None and f[1] is not None for f in map(facts, finished))
    # The accuracy is set aside when it follows the training in no run while the loss learned in
    # some: checked in this order, so the loss is read only when the accuracy never moved.
    follows = any(
        accuracy_follows(r, *(facts(r) if known else (None, None)), detect) for r in finished
    )
    if not follows and any(_loss_learned(r, loss, detect) for r in finished):
        how = "stays at guessing" if known else "does not move"
        return MetricChoice(loss, _note(loss, _meaningless(finished, how)))
    if not known:
        return MetricChoice(
            loss,
            _note(
                loss,
                "without trainer.n_val and trainer.chance the accuracy cannot be judged "
                "against its sampling noise",
            ),
        )
    return MetricChoice("val_acc")


def _meaningless(records: Sequence[dict[str, Any]], how: str) -> str:
    acc = np.concatenate([_values(r, "val_acc") for r in records]) if records else np.array([])
    acc = acc[np.isfinite(acc)]
    level = f" ({acc.min():.3g} to {acc.max():.3g})" if acc.size else ""
    return (
        f"the accuracy column {how}{level} in every run while the loss learned, so it does not "
        f"measure this training (trainer.metric=acc forces it)"
    )


def _note(curve: str, why: str) -> str:
    what = "validation loss" if curve == "val_loss" else "training loss"
    return f"Calls from the {what}: {why}." if why else f"Calls from the {what}."


def best_and_final_loss(record: dict[str, Any], curve: str) -> tuple[float, float]:
    """(lowest finite loss, last epoch's loss or NaN) of a run's loss curve."""
    values = _values(record, curve)
    finite = values[np.isfinite(values)]
    best = float(finite.min()) if finite.size else math.nan
    final = float(values[-1]) if values.size and math.isfinite(values[-1]) else math.nan
    return best, final


def asked_metric(config: Any) -> str:
    """The metric a config asks for: trainer.metric (a user's training), else detect.metric;
    "auto" for lrsweep's own trainer is the accuracy, which every built-in task has. `config` is
    a `Config` or the plain mapping a study stores."""

    def get(node: Any, key: str, default: Any = None) -> Any:
        if isinstance(node, dict):
            return node.get(key, default)
        return getattr(node, key, default)

    trainer = get(config, "trainer") or {}
    asked = get(trainer, "metric") or "auto"
    if asked == "auto":
        asked = get(get(config, "detect") or {}, "metric") or "auto"
    if asked == "auto" and (get(trainer, "name") or "builtin") == "builtin":
        return "acc"
    return asked
