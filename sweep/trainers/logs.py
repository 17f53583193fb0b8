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

Epochs: from an ``epoch`` column when there is one (a first value of 0 means counted from 0; a
run from a checkpoint saved after epoch N may count on from N or N+1, as Keras's initial_epoch),
else each row is one epoch. Rows of one epoch are merged: values of training columns (names
starting with ``train``, and ``loss``) are averaged (Lightning's step rows), and their sd becomes
``train_loss_sd`` when the file has none; in every other column the last value wins. An epoch
number that goes back (a script resumed from an earlier checkpoint, appending) drops what was
read for that epoch and later ones: the later rows win. Epochs must then run 1..n without a gap,
and each must hold the curve the calls read (the validation accuracy when the log has one and it
may be used, else the loss), except a last epoch whose loss is already NaN/inf (a script that
stopped in the middle of the epoch where it blew up). An accuracy outside [0, 1] is refused as
soon as it is read (a loss mapped onto the accuracy), and so is a loss that never changes.

``final=False`` reads a file that the script is still writing: an unfinished last line is left
out, and so is the last epoch when more rows may still come for it (Lightning, and CSV/JSON lines
that repeat epochs) or when it has no validation accuracy yet, unless it already holds a NaN/inf
loss (so that the runner can stop a blown-up run at once). A file not written yet is an empty log.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from sweep.trainers.log_columns import (
    ABSENT,
    CONTRACT_COLUMNS,
    DEFAULT_COLUMNS,
    GROUP_PREFIXES,
    ColumnPlan,
    Columns,
    EpochLog,
    LogError,
)
from sweep.trainers.log_epochs import assemble_epochs

__all__ = [
    "CONTRACT_COLUMNS",
    "DEFAULT_COLUMNS",
    "GROUP_PREFIXES",
    "EpochLog",
    "LogError",
    "parse_log",
    "read_log",
]


# ---------------------------------------------------------------------------------------- reading


def read_log(
    path: str | Path,
    columns: Columns = None,
    final: bool = True,
    metric: str = "auto",
    start_epoch: int = 0,
) -> EpochLog:
    """Read and parse the metrics file at `path` (see `parse_log`).

    A missing file is an empty log while the script runs (`final=False`) and an error once it has
    finished (`final=True`)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        if final:
            raise LogError(
                f"metrics file {path} was never written; the command must write its per-epoch log "
                f"to {{metrics}} (the path lrsweep passes it)"
            ) from None
        return EpochLog(format=_format_from_name(path), path=str(path))
    except OSError as e:
        raise LogError(
            f"metrics file {path} cannot be read ({e.strerror or e}); the command must write a "
            f"plain file at {{metrics}}"
        ) from None
    return parse_log(
        text, path=str(path), columns=columns, final=final, metric=metric, start_epoch=start_epoch
    )


def parse_log(
    text: str,
    path: str = "metrics.csv",
    columns: Columns = None,
    final: bool = True,
    metric: str = "auto",
    start_epoch: int = 0,
) -> EpochLog:
    """Parse a whole log `text` (the content of the file `path`, named in messages).

    `metric` says what the collapse calls will read: "acc" (every epoch needs a validation
    accuracy), "loss" (a loss: the validation loss when logged, else the training loss), or
    "auto" (the accuracy where the log has one, else the loss). `start_epoch`: the run started
    from a checkpoint saved after that epoch, and its epochs may count on from there."""
    text = text.removeprefix("\ufeff")
    if not final:
        end = max(text.rfind("\n"), text.rfind("\r"))
        text = text[: end + 1]  # a last line without its newline is still being written
    stripped = text.lstrip()
    if not stripped:
        if final:
            raise LogError(
                f"metrics file {path} is empty; the command must write one row per epoch (a CSV with "
                f"a header, or JSON lines) to {{metrics}}"
            )
        return EpochLog(format=_format_from_name(Path(path)), path=path)
    if stripped[0] == "{":
        return _parse_jsonl(text, path, columns, final, metric, start_epoch)
    return _parse_csv(text, path, columns, final, metric, start_epoch)


def _format_from_name(path: Path) -> str:
    return "jsonl" if path.suffix.lower() in (".jsonl", ".json", ".ndjson") else "csv"


# --------------------------------------------------------------------------------- the two syntaxes


def _parse_csv(
    text: str, path: str, columns: Columns, final: bool, metric: str, start_epoch: int = 0
) -> EpochLog:
    first_line = text.lstrip("\r\n").split("\n", 1)[0]
    delimiter = (
        max((",", "\t", ";"), key=first_line.count) if any(c in first_line for c in ",\t;") else ","
    )
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header: list[str] | None = None
    for header in reader:
        if header:
            break
    if not header:  # only blank lines
        if final:
            raise LogError(
                f"metrics file {path} has no header; the first line must name the columns "
                f"(e.g. epoch,train_loss,val_loss,val_acc)"
            )
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
    plan = ColumnPlan(path, index, columns, metric)
    if plan.empty_header and not final:
        return EpochLog(format=fmt, path=path)
    wanted = [(index[c], c) for c in plan.read]
    epoch_at = index.get(plan.epoch) if plan.epoch else None
    rows: list[tuple[int, str | None, dict[str, str]]] = []
    for cells in reader:
        if not cells:
            continue
        n = len(cells)
        values = {}
        for i, name in wanted:
            if i < n:
                cell = cells[i].strip()
                if cell not in ABSENT:
                    values[name] = cell
        epoch = cells[epoch_at].strip() if epoch_at is not None and epoch_at < n else None
        rows.append((reader.line_num, epoch if epoch not in ABSENT else None, values))
    return assemble_epochs(rows, plan, path, final, fmt, start_epoch)


def _parse_jsonl(
    text: str, path: str, columns: Columns, final: bool, metric: str, start_epoch: int = 0
) -> EpochLog:
    objects: list[tuple[int, dict[str, Any]]] = []
    keys: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise LogError(
                f"metrics file {path}, line {number}: not valid JSON ({e.msg}); a JSON-lines log needs "
                f"one JSON object per line"
            ) from None
        if not isinstance(obj, dict):
            raise LogError(
                f"metrics file {path}, line {number}: a JSON {type(obj).__name__}, not an object; a "
                f'JSON-lines log needs one object per line, e.g. {{"epoch": 1, "val_acc": 0.8}}'
            )
        for k in obj:
            keys.setdefault(k, len(keys))
        objects.append((number, obj))
    plan = ColumnPlan(path, keys, columns, metric)
    rows = []
    for number, obj in objects:
        values = {}
        for name in plan.read:
            if name in obj:
                values[name] = obj[name]
        epoch = obj.get(plan.epoch) if plan.epoch else None
        rows.append((number, epoch, values))
    return assemble_epochs(rows, plan, path, final, "jsonl", start_epoch)
