"""A user's per-epoch training log, read into lrsweep's curve columns (no torch, no frameworks).

    log = read_log("runs/.../metrics.csv", columns={"val_acc": "my_acc"}, final=True)
    log.epochs    # [{"train_loss": 0.61, "val_loss": 0.52, "val_acc": 0.83}, ...]  epochs 1..n
    log.n_val, log.chance, log.columns, log.format

Formats, told apart by content (a first character `{` means JSON lines, anything else is a CSV
file with a header):

- ``keras-csv``: ``keras.callbacks.CSVLogger``: a header ``epoch,<keys sorted>`` and one row per
  epoch, epochs counted from 0; ``NA`` where a key was missing; CRLF line ends. Each row is a
  whole epoch: a row for an epoch already seen (a resumed fit appending) replaces it.
- ``lightning-csv``: ``lightning.pytorch.loggers.CSVLogger``'s ``metrics.csv``: columns ``epoch``,
  ``step`` and every logged key, sorted; step rows, a validation row and an epoch-end row per
  epoch with the other cells empty; ``on_step``+``on_epoch`` metrics as ``<name>_step`` and
  ``<name>_epoch``. Lightning rewrites the file when a new key appears, so early snapshots have a
  shorter header.
- ``csv``: any other CSV with a header.
- ``jsonl``: one JSON object per line (several per epoch are merged); NaN may be written as
  NaN, null, "nan", Infinity, "inf".

Epochs: from an ``epoch`` column when there is one (a first value of 0 means counted from 0),
else each row is one epoch. Rows of one epoch are merged: values of training columns (names
starting with ``train``, and ``loss``) are averaged (Lightning's step rows), and their sd becomes
``train_loss_sd`` when the file has none; in every other column the last value wins. An epoch
number that goes back (a script resumed from an earlier checkpoint, appending) drops what was
read for that epoch and later ones: the later rows win. Epochs must then run 1..n without a gap,
and each must have a validation accuracy, except a last epoch whose loss is already NaN/inf (a
script that stopped in the middle of the epoch where it blew up).

``final=False`` reads a file that the script is still writing: an unfinished last line is left
out, and so is the last epoch when more rows may still come for it (Lightning, and CSV/JSON lines
that repeat epochs) or when it has no validation accuracy yet, unless it already holds a NaN/inf
loss (so that the runner can stop a blown-up run at once). A file not written yet is an empty log.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from sweep.core.errors import UserError

__all__ = ["CONTRACT_COLUMNS", "DEFAULT_COLUMNS", "GROUP_PREFIXES", "EpochLog", "LogError", "parse_log",
           "read_log"]

#: The curve names lrsweep knows (plus the per-group gradient columns of GROUP_PREFIXES).
CONTRACT_COLUMNS: tuple[str, ...] = (
    "train_loss", "val_loss", "val_acc", "grad_norm_mean", "grad_norm_max", "grad_norm_p90", "clip_fraction",
    "pred_top_frac", "epoch_lr", "val_loss_sd", "train_loss_sd",
)
#: `grad_norm_mean/<group>` and `grad_norm_max/<group>` columns pass through by their own name.
GROUP_PREFIXES: tuple[str, ...] = ("grad_norm_mean/", "grad_norm_max/")

#: Contract name -> the file columns it is read from, in order of preference.
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "val_acc": ("val_acc", "val_accuracy", "val/acc", "val/accuracy", "valid_acc", "valid_accuracy", "val_acc_epoch",
                "val_accuracy_epoch", "validation_accuracy"),
    "val_loss": ("val_loss", "val/loss", "valid_loss", "val_loss_epoch", "validation_loss"),
    # Lightning's on_step+on_epoch `train_loss` is `train_loss_epoch` (+ `train_loss_step`, used for its sd)
    "train_loss": ("train_loss", "loss", "train/loss", "train_loss_epoch", "training_loss", "train_loss_step"),
    # Keras writes `learning_rate` when a schedule callback sets it; Lightning's LearningRateMonitor `lr-<Opt>`
    "epoch_lr": ("epoch_lr", "lr", "learning_rate", "lr-SGD", "lr-Adam", "lr-AdamW", "lr-RMSprop", "lr-Adagrad",
                 "lr-Adadelta", "lr-Adamax", "lr-NAdam", "lr-RAdam"),
    "grad_norm_mean": ("grad_norm_mean",),
    "grad_norm_max": ("grad_norm_max",),
    "grad_norm_p90": ("grad_norm_p90",),
    "clip_fraction": ("clip_fraction",),
    "pred_top_frac": ("pred_top_frac",),
    "val_loss_sd": ("val_loss_sd",),
    "train_loss_sd": ("train_loss_sd",),
}
#: Not curves, but read from the log too (and mappable with `columns`).
_EXTRA_COLUMNS: dict[str, tuple[str, ...]] = {"epoch": ("epoch",), "n_val": ("n_val",), "chance": ("chance",)}
_LOSSES = ("train_loss", "val_loss")
_ABSENT = frozenset({"", "NA"})  # an empty cell; Keras's CSVLogger writes NA for a key an epoch lacked
_HOW_TO_MAP = "name yours with trainer.columns.{name}=COLUMN"
_WHAT = {"val_acc": "validation accuracy", "val_loss": "validation loss", "train_loss": "training loss",
         "epoch_lr": "learning rate", "epoch": "epoch"}

Columns = Optional[Mapping[str, Union[str, Sequence[str]]]]


class LogError(UserError):
    """A metrics file that breaks a rule of the log; the message names the file, line and fix."""


@dataclass
class EpochLog:
    """A parsed log: `epochs[i]` holds epoch i+1's values by contract name (only those logged)."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    n_val: Optional[int] = None
    chance: Optional[float] = None
    columns: dict[str, str] = field(default_factory=dict)  # contract name -> file column read
    format: str = "csv"  # "keras-csv" | "lightning-csv" | "csv" | "jsonl"
    path: str = ""


# ---------------------------------------------------------------------------------------- reading


def read_log(path: Union[str, Path], columns: Columns = None, final: bool = True) -> EpochLog:
    """Read and parse the metrics file at `path` (see `parse_log`).

    A missing file is an empty log while the script runs (`final=False`) and an error once it has
    finished (`final=True`)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        if final:
            raise LogError(f"metrics file {path} was never written; the command must write its per-epoch log "
                           f"to {{metrics}} (the path lrsweep passes it)") from None
        return EpochLog(format=_format_from_name(path), path=str(path))
    except OSError as e:
        raise LogError(f"metrics file {path} cannot be read ({e.strerror or e}); the command must write a "
                       f"plain file at {{metrics}}") from None
    return parse_log(text, path=str(path), columns=columns, final=final)


def parse_log(text: str, path: str = "metrics.csv", columns: Columns = None, final: bool = True) -> EpochLog:
    """Parse a whole log `text` (the content of the file `path`, named in messages)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if not final:
        end = max(text.rfind("\n"), text.rfind("\r"))
        text = text[: end + 1]  # a last line without its newline is still being written
    stripped = text.lstrip()
    if not stripped:
        if final:
            raise LogError(f"metrics file {path} is empty; the command must write one row per epoch (a CSV with "
                           f"a header, or JSON lines) to {{metrics}}")
        return EpochLog(format=_format_from_name(Path(path)), path=path)
    if stripped[0] == "{":
        return _parse_jsonl(text, path, columns, final)
    return _parse_csv(text, path, columns, final)


def _format_from_name(path: Path) -> str:
    return "jsonl" if path.suffix.lower() in (".jsonl", ".json", ".ndjson") else "csv"


# --------------------------------------------------------------------------------- the two syntaxes


def _parse_csv(text: str, path: str, columns: Columns, final: bool) -> EpochLog:
    first_line = text.lstrip("\r\n").split("\n", 1)[0]
    delimiter = max((",", "\t", ";"), key=first_line.count) if any(c in first_line for c in ",\t;") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header: Optional[list[str]] = None
    for header in reader:
        if header:
            break
    if not header:  # only blank lines
        if final:
            raise LogError(f"metrics file {path} has no header; the first line must name the columns "
                           f"(e.g. epoch,train_loss,val_loss,val_acc)")
        return EpochLog(format="csv", path=path)
    header = [h.strip() for h in header]
    if "epoch" in header and "step" in header:
        fmt = "lightning-csv"
    elif header[0] == "epoch" and header[1:] == sorted(header[1:]):
        fmt = "keras-csv"
    else:
        fmt = "csv"
    index = {}
    for i, name in enumerate(header):
        index.setdefault(name, i)
    plan = _Plan(path, index, columns)
    if plan.empty_header and not final:
        return EpochLog(format=fmt, path=path)
    wanted = [(index[c], c) for c in plan.read]
    epoch_at = index.get(plan.epoch) if plan.epoch else None
    rows: list[tuple[int, Optional[str], dict[str, str]]] = []
    for cells in reader:
        if not cells:
            continue
        n = len(cells)
        values = {}
        for i, name in wanted:
            if i < n:
                cell = cells[i].strip()
                if cell not in _ABSENT:
                    values[name] = cell
        epoch = cells[epoch_at].strip() if epoch_at is not None and epoch_at < n else None
        rows.append((reader.line_num, epoch if epoch not in _ABSENT else None, values))
    return _assemble(rows, plan, path, final, fmt)


def _parse_jsonl(text: str, path: str, columns: Columns, final: bool) -> EpochLog:
    objects: list[tuple[int, dict[str, Any]]] = []
    keys: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise LogError(f"metrics file {path}, line {number}: not valid JSON ({e.msg}); a JSON-lines log needs "
                           f"one JSON object per line") from None
        if not isinstance(obj, dict):
            raise LogError(f"metrics file {path}, line {number}: a JSON {type(obj).__name__}, not an object; a "
                           f"JSON-lines log needs one object per line, e.g. {{\"epoch\": 1, \"val_acc\": 0.8}}")
        for k in obj:
            keys.setdefault(k, len(keys))
        objects.append((number, obj))
    plan = _Plan(path, keys, columns)
    rows = []
    for number, obj in objects:
        values = {}
        for name in plan.read:
            if name in obj:
                values[name] = obj[name]
        epoch = obj.get(plan.epoch) if plan.epoch else None
        rows.append((number, epoch, values))
    return _assemble(rows, plan, path, final, "jsonl")


# ------------------------------------------------------------------------------------ which columns


class _Plan:
    """Which file column feeds each contract name, given the columns the file has."""

    def __init__(self, path: str, present: Mapping[str, int], columns: Columns) -> None:
        self.path = path
        self.empty_header = not present
        user = {}
        for name, value in (columns or {}).items():
            if name not in DEFAULT_COLUMNS and name not in _EXTRA_COLUMNS and not name.startswith(GROUP_PREFIXES):
                known = ", ".join(CONTRACT_COLUMNS + tuple(_EXTRA_COLUMNS))
                raise LogError(f"trainer.columns.{name}: lrsweep has no column {name!r} to read from metrics file "
                               f"{path}; use one of {known} (or grad_norm_mean/<group>, grad_norm_max/<group>)")
            user[name] = (value,) if isinstance(value, str) else tuple(value)
        self.user = user
        self.missing_user: list[tuple[str, tuple[str, ...]]] = []
        self.source: dict[str, str] = {}  # contract (or extra) name -> file column
        for name, aliases in list(DEFAULT_COLUMNS.items()) + list(_EXTRA_COLUMNS.items()):
            candidates = user.get(name, aliases)
            found = next((c for c in candidates if c in present), None)
            if found is not None:
                self.source[name] = found
            elif name in user:
                self.missing_user.append((name, candidates))
        for name, candidates in user.items():  # per-group gradient columns named by the user
            if name.startswith(GROUP_PREFIXES) and name not in self.source:
                found = next((c for c in candidates if c in present), None)
                if found is not None:
                    self.source[name] = found
                else:
                    self.missing_user.append((name, candidates))
        taken = set(self.source.values())
        for column in present:
            if column.startswith(GROUP_PREFIXES) and column not in self.source and column not in taken:
                self.source[column] = column
        self.epoch = self.source.pop("epoch", None)
        # the step values of Lightning's on_step+on_epoch train loss give its sd
        self.train_steps: Optional[str] = None
        train = self.source.get("train_loss")
        if train is not None and train.endswith("_epoch"):
            sibling = train[: -len("_epoch")] + "_step"
            if sibling in present:
                self.train_steps = sibling
        read = set(self.source.values())
        if self.train_steps:
            read.add(self.train_steps)
        self.read = sorted(read)

    def check_user_columns(self) -> None:
        if self.missing_user:
            name, candidates = self.missing_user[0]
            raise LogError(f"metrics file {self.path} has no column {' or '.join(map(repr, candidates))} "
                           f"(trainer.columns.{name}); name a column the script writes, or drop the mapping")

    def check_val_acc(self) -> None:
        if "val_acc" not in self.source:
            looked = ", ".join(DEFAULT_COLUMNS["val_acc"])
            raise LogError(f"metrics file {self.path} has no validation accuracy column (looked for {looked}); "
                           f"{_HOW_TO_MAP.format(name='val_acc')}")


# ------------------------------------------------------------------------------------ rows -> epochs


def _averaged(column: str) -> bool:
    return column.startswith("train") or column == "loss"


class _Epoch:
    __slots__ = ("values", "lists", "rows", "last_line")

    def __init__(self) -> None:
        self.values: dict[str, float] = {}   # file column -> last value
        self.lists: dict[str, list[float]] = {}  # averaged file column -> its values
        self.rows = 0
        self.last_line = 0


def _assemble(rows: list[tuple[int, Any, dict[str, Any]]], plan: _Plan, path: str, final: bool,
              fmt: str) -> EpochLog:
    epochs: list[_Epoch] = []
    base: Optional[int] = None
    repeated = False
    whole_rows = fmt == "keras-csv"
    averaged = {c: _averaged(c) for c in plan.read}
    for line, raw_epoch, values in rows:
        if plan.epoch is None:
            number = len(epochs) + 1
        else:
            if raw_epoch is None:
                raise LogError(f"metrics file {path}, line {line}: no value in the {plan.epoch} column; every row "
                               f"needs its epoch")
            value = _epoch_number(raw_epoch, path, line, plan.epoch)
            if base is None:
                base = 0 if value == 0 else 1
            number = value - base + 1
            if number < 1:
                raise LogError(f"metrics file {path}, line {line}: epoch {value} comes after epochs counted from "
                               f"{base}; number epochs from 0 or from 1 throughout")
        if number <= len(epochs) - 1 or (whole_rows and number == len(epochs)):
            del epochs[number - 1:]  # a resumed script writing an epoch again: the later rows win
        if number == len(epochs) + 1:
            epochs.append(_Epoch())
        elif number > len(epochs) + 1:
            shown = number + (base or 1) - 1
            missing = len(epochs) + (base if base is not None else 1)
            raise LogError(f"metrics file {path}, line {line}: epoch {shown} follows epoch {missing - 1}"
                           f"{' (none before it)' if not epochs else ''}, so epoch {missing} is missing; the "
                           f"script must log every epoch, in order")
        else:
            repeated = True
        epoch = epochs[-1]
        epoch.rows += 1
        epoch.last_line = line
        for column, raw in values.items():
            number_value = _number(raw, path, line, column)
            if number_value is None:
                continue
            if averaged[column]:
                epoch.lists.setdefault(column, []).append(number_value)
            else:
                epoch.values[column] = number_value
    return _finish(epochs, plan, path, final, fmt, repeated)


def _finish(epochs: list[_Epoch], plan: _Plan, path: str, final: bool, fmt: str, repeated: bool) -> EpochLog:
    out = [_curves(e, plan) for e in epochs]
    if not final and out:
        last = out[-1]
        blown = any(k in last and not math.isfinite(last[k]) for k in _LOSSES)
        may_grow = fmt == "lightning-csv" or (fmt != "keras-csv" and repeated)
        if not blown and (may_grow or "val_acc" not in last):
            out.pop()
            epochs = epochs[:-1]
    if not out:
        if final:
            raise LogError(f"metrics file {path} holds no epoch (a header without rows); the command must write "
                           f"one row per epoch to {{metrics}}")
        return EpochLog(format=fmt, path=path, columns=_public(plan))
    plan.check_user_columns()
    plan.check_val_acc()
    for i, (curves, epoch) in enumerate(zip(out, epochs), start=1):
        if "val_acc" in curves:
            continue
        blown = any(k in curves and not math.isfinite(curves[k]) for k in _LOSSES)
        if i == len(out) and blown:
            continue  # stopped in the middle of the epoch where the loss blew up
        raise LogError(f"metrics file {path}, line {epoch.last_line}: epoch {i} has no validation accuracy "
                       f"(column {plan.source['val_acc']}); log validation every epoch (Lightning: "
                       f"check_val_every_n_epoch=1)")
    n_val = _constant(out, epochs, "n_val", path, plan)
    chance = _constant(out, epochs, "chance", path, plan)
    for curves in out:
        curves.pop("n_val", None)
        curves.pop("chance", None)
    return EpochLog(epochs=out, n_val=int(n_val) if n_val is not None else None, chance=chance,
                    columns=_public(plan), format=fmt, path=path)


def _public(plan: _Plan) -> dict[str, str]:
    return {k: v for k, v in plan.source.items() if k not in ("n_val", "chance")}


def _curves(epoch: _Epoch, plan: _Plan) -> dict[str, float]:
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
    if not all(math.isfinite(v) for v in values):
        return math.nan
    return statistics.stdev(values)


def _constant(out: list[dict[str, float]], epochs: list[_Epoch], name: str, path: str,
              plan: _Plan) -> Optional[float]:
    column = plan.source.get(name)
    if column is None:
        return None
    seen: Optional[float] = None
    for curves, epoch in zip(out, epochs):
        if name not in curves:
            continue
        value = curves[name]
        if name == "n_val":
            ok = math.isfinite(value) and value >= 1 and value == int(value)
            rule = "a positive whole number (the number of validation items)"
        else:
            ok = 0.0 <= value <= 1.0
            rule = "a rate between 0 and 1 (the accuracy of guessing)"
        if not ok:
            raise LogError(f"metrics file {path}, line {epoch.last_line}: {name} {value:g} in column {column} is "
                           f"not {rule}")
        if seen is not None and value != seen:
            raise LogError(f"metrics file {path}, line {epoch.last_line}: {name} changes from {seen:g} to "
                           f"{value:g} (column {column}); it must be the same in every row")
        seen = value
    return seen


# ------------------------------------------------------------------------------------------- values


def _number(raw: Any, path: str, line: int, column: str) -> Optional[float]:
    """A logged value as a float; None when it is absent."""
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            text = raw.strip()
            if text in _ABSENT:
                return None
            shown = text if len(text) <= 40 else text[:37] + "..."
            raise LogError(f"metrics file {path}, line {line}: {shown!r} in column {column} is not a number; the "
                           f"script must write numbers (nan/inf allowed)") from None
    if raw is None:  # JSON has no NaN: writers put null
        return math.nan
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        shown = json.dumps(raw)[:40]
        raise LogError(f"metrics file {path}, line {line}: {shown} in column {column} is not a number; the script "
                       f"must write numbers (nan/inf allowed)")
    return float(raw)


def _epoch_number(raw: Any, path: str, line: int, column: str) -> int:
    value: Optional[float]
    try:
        value = float(raw) if not isinstance(raw, bool) else None
    except (TypeError, ValueError):
        value = None
    if value is None or not math.isfinite(value) or value != int(value) or value < 0:
        raise LogError(f"metrics file {path}, line {line}: {raw!r} in column {column} is not an epoch number; "
                       f"epochs are whole numbers counted from 0 or 1")
    return int(value)
