"""Reading one data file of the file task into a `Table`: `.npz` arrays, or a long-format
`.csv`/`.parquet` table (one row per sequence and step). Shapes, lengths and finiteness are
checked here; what the targets mean is decided in `sweep.tasks.files`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sweep.config.tasks import column_names
from sweep.core.errors import UserError

EXTENSIONS = (".npz", ".csv", ".parquet")


@dataclass
class Table:
    """One file's (or loader's) sequences before targets are interpreted: x [N, T, F] (token ids
    [N, T] when `vocab_size` is set), y raw, lengths [N]."""

    x: np.ndarray
    y: np.ndarray  # npz: as stored; long format: [N, D] or per step [N, T, D]
    lengths: np.ndarray
    key: str  # the config key that named the file, for messages
    path: str
    varies: bool | None = None  # long format: does a label change within a sequence?
    source: str = ""  # how messages name the data ("loader mydata.load"); default "file <path>"
    vocab_size: int | None = None  # token inputs: x holds ids 0..vocab_size-1 (0 pads)

    def where(self) -> str:
        return f"{self.key}: {self.source or f'file {self.path}'}"


def _error(table_or_key: Any, rule: str, fix: str = "") -> UserError:
    where = table_or_key.where() if isinstance(table_or_key, Table) else table_or_key
    return UserError(" ".join(f"{where}: {rule}".split()) + (f"; {fix}" if fix else ""))


def _show(value: Any) -> str:
    """repr of a value as the user wrote it (7, not np.int64(7))."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:300]


# --------------------------------------------------------------------------- reading


def read_file(path: str, cfg: Any, key: str) -> Table:
    """Read one .npz/.csv/.parquet file into a :class:`Table` (shapes and finiteness checked)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise _error(key, f"{path} is a folder, not a file", "pass an .npz, .csv or .parquet file")
    if p.suffix.lower() not in EXTENSIONS:
        raise _error(
            key,
            f"unknown file type {p.suffix or '(none)'!r} of {path}",
            "pass an .npz, .csv or .parquet file",
        )
    if not p.is_file():
        raise _error(key, f"file {path} does not exist", "pass an existing .npz/.csv/.parquet file")
    if p.suffix.lower() == ".npz":
        return _read_npz(p, key)
    return _read_long(p, cfg, key)


def _read_npz(p: Path, key: str) -> Table:
    fix = "write it with numpy.savez(path, x=x, y=y, lengths=lengths) using numeric arrays"
    try:
        loaded = np.load(p, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # np.load also reads a plain .npy array
            raise _error(key, f"file {p} is a single .npy array, not an .npz archive", fix)
        with loaded as archive:
            arrays = {name: archive[name] for name in archive.files}
    except UserError:
        raise
    except OSError as e:  # permissions, a vanished file, an I/O error: not the file's format
        raise _error(
            key,
            f"cannot read {p} ({e.strerror or _one_line(e)})",
            "check that the file exists and is readable",
        ) from None
    except Exception as e:  # zip errors, pickled or object arrays, ...
        if "pickled" in str(
            e
        ):  # numpy's text suggests unsafe loading; we never unpickle data files
            raise _error(
                key,
                f"file {p} is not an .npz archive of arrays (it is another format or holds "
                "pickled data, which is never loaded)",
                fix,
            ) from None
        raise _error(key, f"cannot read {p} as an .npz archive ({_one_line(e)})", fix) from None
    return table_from_arrays(arrays, key, str(p), fix)


def table_from_arrays(
    arrays: dict[str, Any],
    key: str,
    path: str,
    fix: str,
    source: str = "",
    vocab_size: int | None = None,
    suffix: str = "",
) -> Table:
    """The arrays x, y (and optional lengths) of one split as a checked Table; `suffix` names the
    split's arrays ("_val": x_val, y_val, lengths_val)."""
    where = f"{key}: {source or f'file {path}'}"
    names = {name: name + suffix for name in ("x", "y", "lengths")}
    for name in ("x", "y"):
        if names[name] not in arrays:
            raise _error(
                where,
                f"has no array {names[name]!r} (arrays: {', '.join(sorted(arrays)) or 'none'})",
                fix,
            )
    x, y = arrays[names["x"]], arrays[names["y"]]
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise _error(where, f"array {names['x']} must hold numbers, got dtype {x.dtype}", fix)
    if vocab_size is not None:
        x = _check_tokens(x, vocab_size, where, names["x"], fix)
    elif x.ndim == 2:
        x = x[:, :, None]  # [N, T]: one feature per step
    if x.ndim != (2 if vocab_size is not None else 3) or 0 in x.shape:
        raise _error(
            where,
            f"array {names['x']} must have shape [N, T, F] (or [N, T]) with no empty axis, "
            f"got shape {x.shape}",
            fix,
        )
    n, t = x.shape[:2]
    if y.ndim == 0 or y.shape[0] != n:
        raise _error(
            where,
            f"array {names['y']} must have one entry per sequence (x has N={n}), got shape {y.shape}",
            "x and y must describe the same sequences in the same order",
        )
    if names["lengths"] in arrays and arrays[names["lengths"]] is not None:
        lengths = _check_lengths(arrays[names["lengths"]], n, t, where)
    else:
        lengths = np.full(n, t, dtype=np.int64)
    table = Table(
        x=x, y=y, lengths=lengths, key=key, path=path, source=source, vocab_size=vocab_size
    )
    if vocab_size is None:
        _check_finite_inputs(table)
    return table


def _check_tokens(x: np.ndarray, vocab_size: int, where: str, name: str, fix: str) -> np.ndarray:
    """Token inputs: integer ids [N, T] in 0..vocab_size-1."""
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
        raise _error(
            where,
            f"token inputs {name} must be integer ids of shape [N, T], got dtype {x.dtype} and "
            f"shape {x.shape}",
            fix,
        )
    if x.size and (x.min() < 0 or x.max() >= vocab_size):
        raise _error(
            where,
            f"token ids in {name} must be in 0..{vocab_size - 1} (vocab_size {vocab_size}), got "
            f"{int(x.min())}..{int(x.max())}",
            fix,
        )
    return x.astype(np.int64)


def _check_lengths(lengths: np.ndarray, n: int, t: int, where: str) -> np.ndarray:
    fix = "lengths[i] is the number of valid steps of sequence i, in 1..T"
    if lengths.shape != (n,):
        raise _error(
            where, f"array lengths must have shape [N]=({n},), got shape {lengths.shape}", fix
        )
    numeric = np.issubdtype(lengths.dtype, np.number)
    if not numeric or not np.all(np.isfinite(lengths)) or not np.all(lengths == np.round(lengths)):
        raise _error(
            where, f"array lengths must hold whole numbers, got dtype {lengths.dtype}", fix
        )
    bad = np.nonzero((lengths < 1) | (lengths > t))[0]
    if bad.size:
        i = int(bad[0])
        raise _error(
            where, f"lengths must be in 1..T={t}, got {lengths[i].item()} for sequence {i}", fix
        )
    return lengths.astype(np.int64)


def _valid_steps(lengths: np.ndarray, t: int) -> np.ndarray:
    """[N, T] bool: steps inside each sequence."""
    return np.arange(t)[None, :] < lengths[:, None]


def _check_finite_inputs(table: Table) -> None:
    valid = _valid_steps(table.lengths, table.x.shape[1])
    bad = ~np.isfinite(table.x.astype(np.float64)).all(axis=2) & valid
    if bad.any():
        i, s = map(int, np.argwhere(bad)[0])
        raise _error(
            table,
            f"inputs x hold NaN or inf (first at sequence {i}, step {s})",
            "remove or fill those values (steps after a sequence's length are ignored)",
        )


def _read_long(p: Path, cfg: Any, key: str) -> Table:
    import pandas as pd

    fmt = "CSV" if p.suffix.lower() == ".csv" else "Parquet"
    try:
        df = pd.read_csv(p) if fmt == "CSV" else pd.read_parquet(p)
    except OSError as e:  # with an errno: permissions, I/O (pyarrow reports a bad file without one)
        if e.errno is None:
            raise _error(
                key,
                f"cannot read {p} as {fmt} ({_one_line(e)})",
                "write one row per (sequence, step) with a header line",
            ) from None
        raise _error(
            key, f"cannot read {p} ({e.strerror})", "check that the file exists and is readable"
        ) from None
    except Exception as e:
        raise _error(
            key,
            f"cannot read {p} as {fmt} ({_one_line(e)})",
            "write one row per (sequence, step) with a header line",
        ) from None
    where = f"{key}: file {p}"
    names = [str(c) for c in df.columns]
    df.columns = names
    labels = column_names(cfg.label_columns)
    fixed = [(cfg.seq_column, "task.seq_column"), (cfg.step_column, "task.step_column")]
    fixed += [(c, "task.label_columns") for c in labels]
    for column, option in fixed:
        if column not in names:
            raise _error(
                where,
                f"has no column {column!r} (columns: {', '.join(names)})",
                f"name the column with {option}=NAME",
            )
    if cfg.feature_columns:
        features = column_names(cfg.feature_columns)
        for column in features:
            if column not in names:
                raise _error(
                    where,
                    f"has no feature column {column!r} (columns: {', '.join(names)})",
                    "fix task.feature_columns (e.g. task.feature_columns=[f1,f2])",
                )
    else:
        features = [c for c in names if c not in {cfg.seq_column, cfg.step_column, *labels}]
    if not features:
        raise _error(
            where,
            "has no feature columns besides the sequence, step and label columns",
            "add at least one numeric feature column",
        )
    if len(df) == 0:
        raise _error(where, "has no rows", "write one row per (sequence, step)")
    for column in features + [cfg.step_column]:
        if not (
            pd.api.types.is_numeric_dtype(df[column]) or pd.api.types.is_bool_dtype(df[column])
        ):
            first = df[column].iloc[0]
            raise _error(
                where,
                f"column {column!r} must hold numbers, got dtype {df[column].dtype} "
                f"(first value {_show(first)})",
                "convert it to numbers or leave it out with task.feature_columns",
            )
    for column in [cfg.seq_column, cfg.step_column, *features, *labels]:
        missing = df[column].isna().to_numpy()
        if missing.any():
            raise _error(
                where,
                f"column {column!r} is empty or NaN in data row {int(np.argmax(missing)) + 1}",
                "fill or remove those rows",
            )

    # Sequences in order of their sorted ids, so that the order of the rows in the file (and
    # with it the split) does not matter.
    codes, _ = pd.factorize(df[cfg.seq_column], sort=True)
    steps = df[cfg.step_column].to_numpy()
    order = np.lexsort((steps, codes))
    codes, steps = codes[order], steps[order]
    repeated = np.nonzero((codes[1:] == codes[:-1]) & (steps[1:] == steps[:-1]))[0]
    if repeated.size:
        row = order[repeated[0] + 1]
        seq = df[cfg.seq_column].iloc[row]
        raise _error(
            where,
            f"sequence {_show(seq)} has step {_show(steps[repeated[0]])} more than once "
            f"(data row {row + 1})",
            "each (sequence, step) pair must appear on one row",
        )
    counts = np.bincount(codes)
    n, t = len(counts), int(counts.max())
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(codes)) - starts[codes]
    feat = df[features].to_numpy(dtype=np.float64)[order]
    x = np.zeros((n, t, len(features)), dtype=np.float64)
    x[codes, pos] = feat
    raw = df[labels].to_numpy()[order]  # [rows, D], strings stay objects
    # Padded steps hold a copy of a real label (never scored), so string labels stay strings.
    y = np.full((n, t, len(labels)), raw[0, 0], dtype=raw.dtype)
    y[codes, pos] = raw
    varies = bool(
        (df.groupby(cfg.seq_column, sort=False)[labels].nunique(dropna=False) > 1).to_numpy().any()
    )
    table = Table(x=x, y=y, lengths=counts.astype(np.int64), key=key, path=str(p), varies=varies)
    _check_finite_inputs(table)
    return table


# --------------------------------------------------------------------------- targets
