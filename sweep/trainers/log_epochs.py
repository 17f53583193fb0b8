"""Rows of a user's metrics file merged into epochs 1..n of curve values (see sweep.trainers.logs)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from sweep.trainers.log_columns import (
    ABSENT,
    LOSSES,
    ORIGIN_PREFIX,
    RUN_CONSTANTS,
    TEXT_COLUMNS,
    ColumnPlan,
    EpochLog,
    LogError,
)

# A loss that holds one value over at least this many epochs does not follow the training.
CONSTANT_LOSS_EPOCHS = 3

# ------------------------------------------------------------------------------------ rows -> epochs


def _averaged(column: str) -> bool:
    return column.startswith("train") or column == "loss"


class _Epoch:
    __slots__ = ("last_line", "lists", "rows", "texts", "values")

    def __init__(self) -> None:
        self.values: dict[str, float] = {}  # file column -> last value
        self.texts: dict[str, str] = {}  # text column -> its first word
        self.lists: dict[str, list[float]] = {}  # averaged file column -> its values
        self.rows = 0
        self.last_line = 0


def assemble_epochs(
    rows: list[tuple[int, Any, dict[str, Any]]],
    plan: ColumnPlan,
    path: str,
    final: bool,
    fmt: str,
    start_epoch: int = 0,
) -> EpochLog:
    """`start_epoch`: a run from a checkpoint saved after that epoch may number its epochs on from
    it (Keras's initial_epoch: start_epoch, start_epoch + 1, ...), or afresh from 0 or 1."""
    epochs: list[_Epoch] = []
    base: int | None = None
    shift = 0  # the checkpoint's epoch, when the log counts on from it
    repeated = False
    whole_rows = fmt == "keras-csv"
    averaged = {c: _averaged(c) for c in plan.read}
    accuracy = plan.source.get("val_acc") if plan.metric != "loss" else None
    texts = {plan.source[n] for n in TEXT_COLUMNS if n in plan.source}
    known: dict[Any, int] = {}  # epoch cell -> its number (the same few values repeat on many rows)
    for line, raw_epoch, values in rows:
        if plan.epoch is None:
            number = len(epochs) + 1
        else:
            if raw_epoch is None:
                raise LogError(
                    f"metrics file {path}, line {line}: no value in the {plan.epoch} column; every row "
                    f"needs its epoch"
                )
            value = known.get(raw_epoch) if isinstance(raw_epoch, str) else None
            if value is None:
                value = _epoch_number(raw_epoch, path, line, plan.epoch)
                if isinstance(raw_epoch, str):
                    known[raw_epoch] = value
            if base is None:
                shift = start_epoch if value >= start_epoch else 0
                base = 0 if value - shift == 0 else 1
            number = value - shift - base + 1
            if number < 1:
                raise LogError(
                    f"metrics file {path}, line {line}: epoch {value} comes after epochs counted from "
                    f"{base}; number epochs from 0 or from 1 throughout"
                )
        if number <= len(epochs) - 1 or (whole_rows and number == len(epochs)):
            del epochs[number - 1 :]  # a resumed script writing an epoch again: the later rows win
        if number == len(epochs) + 1:
            epochs.append(_Epoch())
        elif number > len(epochs) + 1:
            shown = number + (base or 1) - 1 + shift
            missing = len(epochs) + (base if base is not None else 1) + shift
            if not epochs:
                raise LogError(
                    f"metrics file {path}, line {line}: the log starts at epoch {shown}, not at 0 or 1, "
                    f"so the epochs before it are missing; a resumed script "
                    f"must keep the rows of the epochs before (Lightning's CSVLogger deletes an existing "
                    f"metrics.csv when it starts: see examples/lightning_script)"
                )
            raise LogError(
                f"metrics file {path}, line {line}: epoch {shown} follows epoch {missing - 1}, so epoch "
                f"{missing} is missing; the script must log every epoch, in order"
            )
        else:
            repeated = True
        epoch = epochs[-1]
        epoch.rows += 1
        epoch.last_line = line
        for column, raw in values.items():
            if column in texts:
                if isinstance(raw, str) and raw.strip() and raw.strip().lower() != "nan":
                    epoch.texts.setdefault(column, raw.strip())
                continue
            try:  # the common case, fast: a CSV cell or a JSON number
                number_value = (
                    float(raw)
                    if raw.__class__ is not bool and raw is not None
                    else _number(raw, path, line, column)
                )
            except (TypeError, ValueError):
                number_value = _number(raw, path, line, column)
            if number_value is None:
                continue
            if (
                column == accuracy
                and not (0.0 <= number_value <= 1.0)
                and number_value == number_value
            ):
                raise LogError(
                    f"metrics file {path}, line {line}: {number_value:g} in column {column} is not an "
                    f"accuracy (a share in [0, 1]); map a loss with trainer.columns.val_loss=COLUMN, "
                    f"not onto val_acc, or name the accuracy with trainer.columns.val_acc=COLUMN"
                )
            if averaged[column]:
                epoch.lists.setdefault(column, []).append(number_value)
            else:
                epoch.values[column] = number_value
    return _finish(epochs, plan, path, final, fmt, repeated)


def _finish(
    epochs: list[_Epoch], plan: ColumnPlan, path: str, final: bool, fmt: str, repeated: bool
) -> EpochLog:
    out = [_curves(e, plan) for e in epochs]
    if final or len(out) >= 2:
        _drop_empty_columns(out, plan)
    if not final and out:
        last = out[-1]
        blown = any(k in last and not math.isfinite(last[k]) for k in LOSSES)
        may_grow = fmt == "lightning-csv" or (fmt != "keras-csv" and repeated)
        if not blown and (may_grow or plan.primary not in last):
            out.pop()
            epochs = epochs[:-1]
    if not out:
        if final:
            raise LogError(
                f"metrics file {path} holds no epoch (a header without rows); the command must write "
                f"one row per epoch to {{metrics}}"
            )
        return EpochLog(format=fmt, path=path, columns=_public(plan))
    plan.check_user_columns()
    plan.check_metric()
    primary = plan.primary
    for i, (curves, epoch) in enumerate(zip(out, epochs), start=1):
        if primary in curves:
            continue
        blown = any(k in curves and not math.isfinite(curves[k]) for k in LOSSES)
        if i == len(out) and blown:
            continue  # stopped in the middle of the epoch where the loss blew up
        what = {"val_acc": "validation accuracy", "val_loss": "validation loss"}.get(primary)
        raise LogError(
            f"metrics file {path}, line {epoch.last_line}: epoch {i} has no "
            f"{what or 'training loss'} (column {plan.source[primary]}); "
            + (
                "log validation every epoch (Lightning: check_val_every_n_epoch=1)"
                if what
                else "log the training loss every epoch"
            )
        )
    if final and plan.metric == "loss":
        _check_loss_moves(out, epochs, plan, path)
    facts = {name: _constant(out, epochs, name, path, plan) for name in RUN_CONSTANTS}
    for curves in out:
        for name in RUN_CONSTANTS:
            curves.pop(name, None)
    origin_column = plan.source.get("nonfinite_origin")
    origin = next((e.texts[origin_column] for e in epochs if origin_column in e.texts), None)
    flagged = _origin_flags(out)  # lrsweep's callbacks: a number column per group
    origin = origin or flagged
    return EpochLog(
        epochs=out,
        n_val=int(facts["n_val"]) if facts["n_val"] is not None else None,
        chance=facts["chance"],
        chance_loss=facts["chance_loss"],
        nonfinite_origin=origin,
        columns=_public(plan),
        format=fmt,
        path=path,
    )


def _origin_flags(out: list[dict[str, float]]) -> str | None:
    """The group named by the first `nonfinite_origin/<group>` column holding 1 (lrsweep's Keras
    and Lightning callbacks and GradientMonitor log the NaN origin as numbers: frameworks refuse
    words in their logs); the flag columns are not curves, so they leave the rows."""
    origin = None
    for row in out:
        for key in [k for k in row if k.startswith(ORIGIN_PREFIX)]:
            if origin is None and row[key] == 1.0:
                origin = key[len(ORIGIN_PREFIX) :]
            del row[key]
    return origin


def _drop_empty_columns(out: list[dict[str, float]], plan: ColumnPlan) -> None:
    """A validation column with no value in any epoch was never logged: Keras's CSVLogger writes
    `val_loss` as NA in every row of a fit without validation data. The calls then read what was
    logged (the training loss)."""
    for name in ("val_acc", "val_loss"):
        if name in plan.source and not any(name in row for row in out):
            del plan.source[name]


def _check_loss_moves(
    out: list[dict[str, float]], epochs: list[_Epoch], plan: ColumnPlan, path: str
) -> None:
    """A loss the calls read must follow the training: one value in every epoch (a placeholder
    column, a metric that is never updated) is refused."""
    name = plan.loss
    values = [c[name] for c in out if name in c and math.isfinite(c[name])]
    if len(values) >= CONSTANT_LOSS_EPOCHS and max(values) == min(values):
        raise LogError(
            f"metrics file {path}, line {epochs[-1].last_line}: column {plan.source[name]} holds "
            f"{values[0]:g} in every epoch, so it does not follow the training; log the loss the "
            f"optimiser minimises, or name it with trainer.columns.{name}=COLUMN"
        )


def _public(plan: ColumnPlan) -> dict[str, str]:
    return {
        k: v for k, v in plan.source.items() if k not in RUN_CONSTANTS and k != "nonfinite_origin"
    }


def _curves(epoch: _Epoch, plan: ColumnPlan) -> dict[str, float]:
    row: dict[str, float] = {}
    for name, column in plan.source.items():
        if column in epoch.lists:
            values = epoch.lists[column]
            row[name] = math.fsum(values) / len(values)
            if name == "train_loss" and len(values) >= 2 and "train_loss_sd" not in plan.source:
                row["train_loss_sd"] = _sd(values)
        elif column in epoch.values:
            row[name] = epoch.values[column]
    if plan.train_steps:
        steps = epoch.lists.get(plan.train_steps, ())
        if steps and "train_loss" not in row:  # no epoch-end row (yet): the mean of the step values
            row["train_loss"] = math.fsum(steps) / len(steps)
        if len(steps) >= 2 and "train_loss_sd" not in row:
            row["train_loss_sd"] = _sd(steps)
    return row


def _sd(values: Sequence[float]) -> float:
    """The sample sd (n - 1), as torch's std(); NaN when a value is not finite."""
    mean = math.fsum(values) / len(values)
    if not math.isfinite(mean):
        return math.nan
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _constant(
    out: list[dict[str, float]], epochs: list[_Epoch], name: str, path: str, plan: ColumnPlan
) -> float | None:
    column = plan.source.get(name)
    if column is None:
        return None
    seen: float | None = None
    for curves, epoch in zip(out, epochs):
        if name not in curves:
            continue
        value = curves[name]
        if name == "n_val":
            ok = math.isfinite(value) and value >= 1 and value == int(value)
            rule = "a positive whole number (the number of validation items)"
        elif name == "chance_loss":
            ok = math.isfinite(value) and value > 0
            rule = "a loss > 0 (the loss of knowing nothing)"
        else:
            ok = 0.0 <= value <= 1.0
            rule = "a rate between 0 and 1 (the accuracy of guessing)"
        if not ok:
            raise LogError(
                f"metrics file {path}, line {epoch.last_line}: {name} {value:g} in column {column} is "
                f"not {rule}"
            )
        if seen is not None and value != seen:
            raise LogError(
                f"metrics file {path}, line {epoch.last_line}: {name} changes from {seen:g} to "
                f"{value:g} (column {column}); it must be the same in every row"
            )
        seen = value
    return seen


# ------------------------------------------------------------------------------------------- values


def _number(raw: Any, path: str, line: int, column: str) -> float | None:
    """A logged value as a float; None when it is absent."""
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            text = raw.strip()
            if text in ABSENT:
                return None
            shown = text if len(text) <= 40 else text[:37] + "..."
            raise LogError(
                f"metrics file {path}, line {line}: {shown!r} in column {column} is not a number; the "
                f"script must write numbers (nan/inf allowed)"
            ) from None
    if raw is None:  # JSON has no NaN: writers put null
        return math.nan
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        shown = json.dumps(raw)[:40]
        raise LogError(
            f"metrics file {path}, line {line}: {shown} in column {column} is not a number; the script "
            f"must write numbers (nan/inf allowed)"
        )
    return float(raw)


def _epoch_number(raw: Any, path: str, line: int, column: str) -> int:
    value: float | None
    try:
        value = float(raw) if not isinstance(raw, bool) else None
    except (TypeError, ValueError):
        value = None
    if value is None or not math.isfinite(value) or value != int(value) or value < 0:
        raise LogError(
            f"metrics file {path}, line {line}: {raw!r} in column {column} is not an epoch number; "
            f"epochs are whole numbers counted from 0 or 1"
        )
    return int(value)
