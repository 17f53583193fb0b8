"""One runs.csv row per run: a run record -> its collapse call and the numbers beside it.

Usage::

    row = run_row(record, chance, detect, n_val, metric="val_acc")   # a decoded run record

`metric` is the curve the calls read (`sweep.analysis.metric`): the accuracy (`detect_run`) or a
loss (`detect_loss_run`). A run that crashed or timed out gets no call (`failed_row`). Pure
functions of the stored record and the thresholds, so a report can be rebuilt without training.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sweep.analysis.autopsy import AUTOPSY_COLUMNS, autopsy_columns, empty_columns
from sweep.analysis.detection import detect_run
from sweep.analysis.metric import best_and_final_loss, loss_curve
from sweep.analysis.shapes import loss_jump, volatility, warmup_epochs
from sweep.config import DetectConfig
from sweep.core.records import FAILURES
from sweep.core.values import nanmedian

RUN_COLUMNS = [
    "seed",
    "best_acc",
    "best_epoch",
    "final_acc",
    "collapsed",
    "collapse_epoch",
    "collapse_mode",
    "never_learned",
    "spikes",
    "nonfinite",
    "epochs_run",
    "grad_norm_p90",
    "grad_norm_max",
    "seconds",
    "device",
    "trial",
    "outcome",
    "undecided",
    "noise_floor",
    "collapse_witness",
    "loss_jump_epoch",
    "loss_jump_ratio",
    "volatility",
    "step_loss_cv",
    "failure_reason",
    "log_path",
    "metric",
    "best_loss",
    "final_loss",
    *AUTOPSY_COLUMNS,  # why it collapsed (issue 26): collapse_chain, collapse_cause, cause_epoch, ...
]


def run_row(
    record: dict[str, Any],
    chance: float,
    detect: Any,
    n_val: int | None = None,
    metric: str = "val_acc",
    chance_loss: float | None = None,
) -> dict[str, Any]:
    """One runs.csv row (without the axes) from a decoded run record; `n_val` is the number of
    validation sequences its accuracies were measured on (None: sampling noise ignored). A run
    of a user's training that states its own n_val and chance (in its log) is read with those.

    A run that crashed or timed out (a user's training) is not called at all: outcome `crashed`
    or `timed_out`, never a collapse, its reason and the folder of its log beside it.

    `metric` is the curve the calls read (`sweep.analysis.metric`): "val_acc", or a loss
    ("val_loss", "train_loss") judged against `chance_loss`, the loss of knowing nothing (a
    run's own statement of it comes first; None: its first logged loss)."""
    c = record["curves"]
    if record.get("n_val"):
        n_val = int(record["n_val"])
    if record.get("chance") is not None:
        chance = float(record["chance"])
    if record.get("failure"):
        return {**failed_row(record), **_loss_columns(record, metric)}
    if metric != "val_acc":
        return loss_run_row(record, detect, metric, record.get("chance_loss") or chance_loss, n_val)

    def as_list(key):
        return np.asarray(c[key], dtype=float).tolist()  # Python floats: fast to loop over

    v = detect_run(
        as_list("val_acc"),
        as_list("val_loss"),
        as_list("pred_top_frac"),
        record.get("nonfinite_epoch"),
        chance,
        detect,
        n_val=n_val,
        val_loss_sd=as_list("val_loss_sd") if "val_loss_sd" in c else None,
    )
    return {
        "seed": int(record["seed"]),
        "best_acc": v.best_acc,
        "best_epoch": v.best_epoch,
        "final_acc": v.final_acc,
        "collapsed": v.collapsed,
        "collapse_epoch": v.collapse_epoch,
        "collapse_mode": v.collapse_mode,
        "never_learned": v.never_learned,
        "spikes": v.spikes,
        "nonfinite": record.get("nonfinite") or "",
        "epochs_run": int(len(c["val_acc"])),
        "grad_norm_p90": nanmedian(np.asarray(c["grad_norm_p90"], dtype=float)),
        "grad_norm_max": float(np.nanmax(c["grad_norm_max"]))
        if np.isfinite(c["grad_norm_max"]).any()
        else math.nan,
        "seconds": float(record.get("seconds", math.nan)),
        "device": str(record.get("device") or ""),
        "outcome": v.outcome,
        "undecided": v.undecided,
        "noise_floor": v.noise_floor,
        "collapse_witness": v.witness,
        **shape_columns(c, detect, learned=v.outcome != "never_learned"),
        "failure_reason": "",
        "log_path": str(record.get("log_path") or ""),
        **_loss_columns(record, metric),
        **autopsy_columns(c, v, record.get("nonfinite_origin")),
    }


def _loss_columns(record: dict[str, Any], metric: str) -> dict[str, Any]:
    """metric, best_loss, final_loss of a run (the loss of an accuracy run: its validation loss,
    else its training loss)."""
    curve = metric if metric != "val_acc" else loss_curve([record])
    best, final = best_and_final_loss(record, curve)
    return {"metric": metric, "best_loss": best, "final_loss": final}


def _items(record: dict[str, Any], metric: str, epochs: int, n_val: int | None) -> int | None:
    """What each epoch's loss averages over, for the noise of its spread (`<metric>_sd`): the
    validation items, or the training steps of an epoch (lrsweep's own loop records its steps;
    a user's log does not say, and its spread is then left to the curve's own scatter)."""
    if metric == "val_loss":
        return record.get("n_val") or n_val
    steps = int(record.get("steps") or 0)
    return steps // epochs if steps and epochs and steps >= epochs else None


def loss_run_row(
    record: dict[str, Any],
    detect: Any,
    metric: str,
    chance_loss: float | None,
    n_val: int | None = None,
) -> dict[str, Any]:
    """The runs.csv row of a run whose calls read a loss curve (`detect_loss_run`): no accuracy
    (best_acc, final_acc empty), best_loss and final_loss from that curve."""
    from sweep.analysis.loss_detection import detect_loss_run

    c = record["curves"]
    values = np.asarray(c.get(metric, ()), dtype=float)
    sd_column = f"{metric}_sd"
    v = detect_loss_run(
        values.tolist(),
        detect=detect,
        nonfinite_epoch=record.get("nonfinite_epoch"),
        chance_loss=chance_loss,
        loss_sd=np.asarray(c[sd_column], dtype=float).tolist() if sd_column in c else None,
        n_items=_items(record, metric, len(values), n_val),
    )
    return {
        "seed": int(record["seed"]),
        "best_acc": math.nan,
        "best_epoch": v.best_epoch,
        "final_acc": math.nan,
        "collapsed": v.collapsed,
        "collapse_epoch": v.collapse_epoch,
        "collapse_mode": v.collapse_mode,
        "never_learned": v.never_learned,
        "spikes": v.spikes,
        "nonfinite": record.get("nonfinite") or "",
        "epochs_run": int(len(values)),
        "grad_norm_p90": nanmedian(np.asarray(c["grad_norm_p90"], dtype=float)),
        "grad_norm_max": float(np.nanmax(c["grad_norm_max"]))
        if np.isfinite(c["grad_norm_max"]).any()
        else math.nan,
        "seconds": float(record.get("seconds", math.nan)),
        "device": str(record.get("device") or ""),
        "outcome": v.outcome,
        "undecided": v.outcome == "undecided",
        "noise_floor": math.nan,
        "collapse_witness": v.witness,
        **shape_columns(c, detect, learned=v.outcome != "never_learned"),
        "failure_reason": "",
        "log_path": str(record.get("log_path") or ""),
        "metric": metric,
        "best_loss": v.best_loss if math.isfinite(v.best_loss) else v.reference,
        "final_loss": v.final_loss,
        **autopsy_columns(c, v, record.get("nonfinite_origin")),
    }


def failed_row(record: dict[str, Any]) -> dict[str, Any]:
    """The runs.csv row of a run that did not finish: what it logged, no call."""
    c = record["curves"]
    acc = np.asarray(c.get("val_acc", []), dtype=float)
    finite = acc[np.isfinite(acc)]
    return {
        "seed": int(record["seed"]),
        "best_acc": float(finite.max()) if len(finite) else math.nan,
        "best_epoch": int(np.nanargmax(np.where(np.isfinite(acc), acc, -np.inf))) + 1
        if len(finite)
        else None,
        "final_acc": float(acc[-1]) if len(acc) else math.nan,
        "collapsed": False,
        "collapse_epoch": None,
        "collapse_mode": "",
        "never_learned": False,
        "spikes": 0,
        "nonfinite": "",
        "epochs_run": int(len(acc)),
        "grad_norm_p90": math.nan,
        "grad_norm_max": math.nan,
        "seconds": float(record.get("seconds", math.nan)),
        "device": str(record.get("device") or ""),
        "outcome": str(record["failure"]),
        "undecided": False,
        "noise_floor": math.nan,
        "collapse_witness": "",
        "loss_jump_epoch": None,
        "loss_jump_ratio": math.nan,
        "volatility": math.nan,
        "step_loss_cv": math.nan,
        "failure_reason": str(record.get("failure_reason") or ""),
        "log_path": str(record.get("log_path") or ""),
        **empty_columns(),
    }


def is_failed(row: dict[str, Any]) -> bool:
    """A run that crashed or timed out (counted apart from every rate and mean)."""
    return row.get("outcome") in FAILURES


def shape_columns(curves: dict[str, Any], detect: Any, learned: bool = True) -> dict[str, Any]:
    """A run's other failure shapes (sweep.analysis.shapes): a validation-loss jump that never
    recovers (its epoch and ratio, empty when none), the volatility of its training loss (after
    warm-up), and the median spread of its per-step losses within an epoch (as a share of the
    epoch's mean loss).

    A loss jump is looked for only in a run that learned (`learned`: its best beat the noise
    floor), as a collapse is: a net that learned nothing has no learned state to lose, and its
    validation loss rises for another reason (memorising noise; random labels do this). The jump
    is measured against the curve's own epoch-to-epoch noise, which a smaller validation set
    makes larger: the data's size is in the threshold."""
    jump = (
        loss_jump(
            np.asarray(curves["val_loss"], dtype=float),
            z=getattr(detect, "jump_z", DetectConfig.jump_z),
            min_rise=getattr(detect, "jump_min_rise", DetectConfig.jump_min_rise),
            patience=detect.patience,
        )
        if learned
        else None
    )
    train = np.asarray(curves["train_loss"], dtype=float)
    cv = math.nan
    if "train_loss_sd" in curves:
        sd = np.asarray(curves["train_loss_sd"], dtype=float)
        start = warmup_epochs(len(train), 0.2)
        ratio = sd[start:] / train[start:]
        cv = nanmedian(ratio[np.isfinite(ratio)])
    return {
        "loss_jump_epoch": jump.epoch if jump else None,
        "loss_jump_ratio": jump.ratio if jump else math.nan,
        "volatility": volatility(train),
        "step_loss_cv": cv,
    }
