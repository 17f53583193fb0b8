"""The user's own sequences from a file: ``task=file task.path=PATH``.

Usage: ``data = build_file(cfg.task)`` (through ``sweep.tasks.build_task``). Two formats:

- ``.npz`` (``numpy.savez``; read with ``allow_pickle=False``): ``x`` [N, T, F] numbers (or
  [N, T] for one feature), ``y`` the targets, optional ``lengths`` [N] valid steps of each
  zero-padded sequence (default: all T). ``y`` is [N] class labels, [N, D] float targets, or per
  step [N, T] labels / [N, T, D] float targets (values after a sequence's length are ignored).
- ``.csv`` / ``.parquet`` in long format, one row per (sequence, step)::

      seq,step,f1,f2,label        # task.seq_column, task.step_column, task.label_columns
      a,0,0.1,1.2,3               # features: task.feature_columns, default every other column
      a,1,0.3,0.9,3
      b,0,0.0,1.1,0

  Rows may come in any order: sequences are ordered by their sorted ids, and ``step`` only
  orders the rows of a sequence (any numbers, not necessarily 0..n-1; a repeated step is an
  error). Sequences of different
  lengths are zero-padded to the longest, with ``lengths``. A label that is the same on every
  row of each sequence is a sequence target; one that varies within a sequence gives per-step
  targets. Several label columns (comma-separated) form a regression vector.

Targets: ``task.kind=auto`` reads integer, boolean or string labels as classification and float
targets as regression. Class labels may be any values (e.g. 1..6 or "walk"/"run"): their sorted
distinct values become classes 0..C-1 (the mapping is in the task info). Validation: a split of
``task.val_fraction`` fixed by ``task.data_seed`` (stratified by class for sequence labels when
every class has two sequences), or the file ``task.val_path`` in the same format. Features are
standardised with training statistics over valid steps when ``task.normalize`` is true;
regression targets are never rescaled (``task.tolerance`` is in target units).

Every problem with the data raises a one-line :class:`~sweep.errors.UserError` naming the file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from sweep.core.errors import UserError
from sweep.tasks.data import TaskData

EXTENSIONS = (".npz", ".csv", ".parquet")


@dataclass
class Table:
    """One file's sequences before targets are interpreted: x [N, T, F], y raw, lengths [N]."""

    x: np.ndarray
    y: np.ndarray  # npz: as stored; long format: [N, D] or per step [N, T, D]
    lengths: np.ndarray
    key: str  # the config key that named the file, for messages
    path: str
    varies: Optional[bool] = None  # long format: does a label change within a sequence?

    def where(self) -> str:
        return f"{self.key}: file {self.path}"


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
        raise _error(key, f"unknown file type {p.suffix or '(none)'!r} of {path}",
                     "pass an .npz, .csv or .parquet file")
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
        raise _error(key, f"cannot read {p} ({e.strerror or _one_line(e)})", "check that the file exists and is readable") from None
    except Exception as e:  # zip errors, pickled or object arrays, ...
        if "pickled" in str(e):  # numpy's text suggests unsafe loading; we never unpickle data files
            raise _error(key, f"file {p} is not an .npz archive of arrays (it is another format or holds "
                         "pickled data, which is never loaded)", fix) from None
        raise _error(key, f"cannot read {p} as an .npz archive ({_one_line(e)})", fix) from None
    where = f"{key}: file {p}"
    for name in ("x", "y"):
        if name not in arrays:
            raise _error(where, f"has no array {name!r} (arrays: {', '.join(sorted(arrays)) or 'none'})", fix)
    x, y = arrays["x"], arrays["y"]
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise _error(where, f"array x must hold numbers, got dtype {x.dtype}", fix)
    if x.ndim == 2:
        x = x[:, :, None]  # [N, T]: one feature per step
    if x.ndim != 3 or 0 in x.shape:
        raise _error(where, f"array x must have shape [N, T, F] (or [N, T]) with no empty axis, "
                     f"got shape {x.shape}", fix)
    n, t = x.shape[:2]
    if y.ndim == 0 or y.shape[0] != n:
        raise _error(where, f"array y must have one entry per sequence (x has N={n}), got shape {y.shape}",
                     "x and y must describe the same sequences in the same order")
    if "lengths" in arrays:
        lengths = _check_lengths(arrays["lengths"], n, t, where)
    else:
        lengths = np.full(n, t, dtype=np.int64)
    table = Table(x=x, y=y, lengths=lengths, key=key, path=str(p))
    _check_finite_inputs(table)
    return table


def _check_lengths(lengths: np.ndarray, n: int, t: int, where: str) -> np.ndarray:
    fix = "lengths[i] is the number of valid steps of sequence i, in 1..T"
    if lengths.shape != (n,):
        raise _error(where, f"array lengths must have shape [N]=({n},), got shape {lengths.shape}", fix)
    numeric = np.issubdtype(lengths.dtype, np.number)
    if not numeric or not np.all(np.isfinite(lengths)) or not np.all(lengths == np.round(lengths)):
        raise _error(where, f"array lengths must hold whole numbers, got dtype {lengths.dtype}", fix)
    bad = np.nonzero((lengths < 1) | (lengths > t))[0]
    if bad.size:
        i = int(bad[0])
        raise _error(where, f"lengths must be in 1..T={t}, got {lengths[i].item()} for sequence {i}", fix)
    return lengths.astype(np.int64)


def _valid_steps(lengths: np.ndarray, t: int) -> np.ndarray:
    """[N, T] bool: steps inside each sequence."""
    return np.arange(t)[None, :] < lengths[:, None]


def _check_finite_inputs(table: Table) -> None:
    valid = _valid_steps(table.lengths, table.x.shape[1])
    bad = ~np.isfinite(table.x.astype(np.float64)).all(axis=2) & valid
    if bad.any():
        i, s = map(int, np.argwhere(bad)[0])
        raise _error(table, f"inputs x hold NaN or inf (first at sequence {i}, step {s})",
                     "remove or fill those values (steps after a sequence's length are ignored)")


def _read_long(p: Path, cfg: Any, key: str) -> Table:
    import pandas as pd

    fmt = "CSV" if p.suffix.lower() == ".csv" else "Parquet"
    try:
        df = pd.read_csv(p) if fmt == "CSV" else pd.read_parquet(p)
    except OSError as e:  # with an errno: permissions, I/O (pyarrow reports a bad file without one)
        if e.errno is None:
            raise _error(key, f"cannot read {p} as {fmt} ({_one_line(e)})",
                         "write one row per (sequence, step) with a header line") from None
        raise _error(key, f"cannot read {p} ({e.strerror})", "check that the file exists and is readable") from None
    except Exception as e:
        raise _error(key, f"cannot read {p} as {fmt} ({_one_line(e)})",
                     "write one row per (sequence, step) with a header line") from None
    where = f"{key}: file {p}"
    names = [str(c) for c in df.columns]
    df.columns = names
    labels = [c.strip() for c in cfg.label_columns.split(",") if c.strip()]
    fixed = [(cfg.seq_column, "task.seq_column"), (cfg.step_column, "task.step_column")]
    fixed += [(c, "task.label_columns") for c in labels]
    for column, option in fixed:
        if column not in names:
            raise _error(where, f"has no column {column!r} (columns: {', '.join(names)})",
                         f"name the column with {option}=NAME")
    if cfg.feature_columns:
        features = [c.strip() for c in cfg.feature_columns.split(",") if c.strip()]
        for column in features:
            if column not in names:
                raise _error(where, f"has no feature column {column!r} (columns: {', '.join(names)})",
                             "fix task.feature_columns (comma-separated names)")
    else:
        features = [c for c in names if c not in {cfg.seq_column, cfg.step_column, *labels}]
    if not features:
        raise _error(where, "has no feature columns besides the sequence, step and label columns",
                     "add at least one numeric feature column")
    if len(df) == 0:
        raise _error(where, "has no rows", "write one row per (sequence, step)")
    for column in features + [cfg.step_column]:
        if not (pd.api.types.is_numeric_dtype(df[column]) or pd.api.types.is_bool_dtype(df[column])):
            first = df[column].iloc[0]
            raise _error(where, f"column {column!r} must hold numbers, got dtype {df[column].dtype} "
                         f"(first value {_show(first)})",
                         "convert it to numbers or leave it out with task.feature_columns")
    for column in [cfg.seq_column, cfg.step_column, *features, *labels]:
        missing = df[column].isna().to_numpy()
        if missing.any():
            raise _error(where, f"column {column!r} is empty or NaN in data row {int(np.argmax(missing)) + 1}",
                         "fill or remove those rows")

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
        raise _error(where, f"sequence {_show(seq)} has step {_show(steps[repeated[0]])} more than once "
                     f"(data row {row + 1})",
                     "each (sequence, step) pair must appear on one row")
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
    varies = bool((df.groupby(cfg.seq_column, sort=False)[labels].nunique(dropna=False) > 1).to_numpy().any())
    table = Table(x=x, y=y, lengths=counts.astype(np.int64), key=key, path=str(p), varies=varies)
    _check_finite_inputs(table)
    return table


# --------------------------------------------------------------------------- targets


@dataclass
class Targets:
    """Targets in canonical shape: classification [N] / [N, T] raw labels, regression [N, D] / [N, T, D]."""

    kind: str
    per_step: bool
    y: np.ndarray


def _is_label_dtype(y: np.ndarray) -> bool:
    return y.dtype == bool or np.issubdtype(y.dtype, np.integer) or y.dtype.kind in "USO"


def interpret_targets(table: Table, cfg: Any) -> Targets:
    """Decide classification vs regression and per-step vs per-sequence; bring y to canonical shape."""
    y, t = table.y, table.x.shape[1]
    kind = cfg.kind if cfg.kind != "auto" else ("classification" if _is_label_dtype(y) else "regression")
    if table.varies is not None:  # long format: y is [N, T, D] by construction
        per_step = table.varies if cfg.per_step is None else cfg.per_step
        if table.varies and not per_step:
            raise _error(table, "the label changes within a sequence, but task.per_step=false",
                         "set task.per_step=true for a target at every step, or give each sequence one label")
        if not per_step:
            y = y[:, 0]  # [N, D]: the label of each sequence's first row (all rows agree)
        if kind == "classification":
            if y.shape[-1] != 1:
                raise _error(table, f"classification needs one label column, got {y.shape[-1]}",
                             "set task.kind=regression for a vector target")
            y = y[..., 0]
    else:
        per_step = cfg.per_step
        if per_step is None:
            per_step = y.ndim == 3 or (y.ndim == 2 and kind == "classification" and y.shape[1] == t)
        if per_step and (y.ndim < 2 or y.shape[1] != t):
            raise _error(table, f"per-step targets y must have shape [N, T={t}, ...], got shape {y.shape}",
                         "set task.per_step=false for one target per sequence")
        want = {("classification", False): (1,), ("classification", True): (2,),
                ("regression", False): (1, 2), ("regression", True): (2, 3)}[kind, per_step]
        if y.ndim not in want:
            shapes = {("classification", False): "[N] (one class per sequence)",
                      ("classification", True): "[N, T] (one class per step)",
                      ("regression", False): "[N] or [N, D]", ("regression", True): "[N, T] or [N, T, D]"}
            raise _error(table, f"{kind} targets y must have shape {shapes[kind, per_step]}, got shape {y.shape}",
                         "check task.kind and task.per_step (auto: integer y is classification, float y regression)")
        if kind == "regression" and y.ndim == (2 if per_step else 1):
            y = y[..., None]
    if kind == "regression":
        if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
            raise _error(table, f"regression targets must be numbers, got dtype {y.dtype}",
                         "set task.kind=classification for class labels")
        y = y.astype(np.float64)
        valid = _valid_steps(table.lengths, t) if per_step else np.ones(len(y), dtype=bool)
        bad = ~np.isfinite(y).all(axis=-1) & valid
        if bad.any():
            where = np.argwhere(bad)[0]
            at = f"sequence {where[0]}" + (f", step {where[1]}" if per_step else "")
            raise _error(table, f"targets y hold NaN or inf (first at {at})", "remove or fill those values")
    return Targets(kind=kind, per_step=bool(per_step), y=y)


def _label_values(table: Table, targets: Targets) -> np.ndarray:
    """The labels that count: every sequence's, or every valid step's."""
    if not targets.per_step:
        return targets.y
    return targets.y[_valid_steps(table.lengths, table.x.shape[1])]


def class_list(table: Table, targets: Targets) -> np.ndarray:
    """Sorted distinct labels; integral floats are accepted, others are not labels."""
    values = _label_values(table, targets)
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            bad = values[~(np.isfinite(values) & (values == np.round(values)))][0]
            raise _error(table, f"class labels must be integers or strings, got {_show(bad)}",
                         "set task.kind=regression for real-valued targets")
    if values.dtype == object:
        values = values.astype(str)
    return np.unique(values)


def encode_labels(table: Table, targets: Targets, classes: np.ndarray) -> np.ndarray:
    """Labels -> class ids 0..C-1 (sorted distinct values); padded steps become class 0."""
    y = targets.y.astype(str) if targets.y.dtype == object else targets.y
    ids = np.searchsorted(classes, y).clip(0, len(classes) - 1)
    known = classes[ids] == y
    valid = _valid_steps(table.lengths, table.x.shape[1]) if targets.per_step else np.ones(len(y), dtype=bool)
    unknown = valid & ~known
    if unknown.any():
        label = y[unknown][0]
        raise _error(table, f"label {_show(label)} does not occur in the training data (task.path)",
                     "every validation class must also appear in training")
    return np.where(valid, ids, 0).astype(np.int64)


# --------------------------------------------------------------------------- split, scale, pack


def split_indices(n: int, cfg: Any, strata: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Fixed train/validation indices: `val_fraction` of the sequences, stratified when possible."""
    n_val = int(round(n * cfg.val_fraction))
    if n_val < 1 or n - n_val < 1:
        raise _error("task.val_fraction", f"{cfg.val_fraction} of {n} sequences leaves {n - n_val} for training "
                     f"and {n_val} for validation",
                     "give more sequences, change task.val_fraction, or pass task.val_path")
    if strata is not None:
        counts = np.unique(strata, return_counts=True)[1]
        if counts.min() >= 2 and min(n_val, n - n_val) >= len(counts):
            from sklearn.model_selection import train_test_split

            train, val = train_test_split(np.arange(n), test_size=n_val, random_state=cfg.data_seed, stratify=strata)
            return np.sort(train), np.sort(val)
    perm = np.random.default_rng(cfg.data_seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _pad_steps(a: np.ndarray, t: int) -> np.ndarray:
    return np.pad(a, [(0, 0), (0, t - a.shape[1])] + [(0, 0)] * (a.ndim - 2))


def build_file(cfg: Any) -> TaskData:
    """The file task's TaskData (see the module docstring for formats and rules)."""
    train = read_file(cfg.path, cfg, "task.path")
    val = read_file(cfg.val_path, cfg, "task.val_path") if cfg.val_path else None
    tt = interpret_targets(train, cfg)
    vt = interpret_targets(val, dataclasses.replace(cfg, kind=tt.kind, per_step=tt.per_step)) if val else None
    if val is not None:
        if val.x.shape[2] != train.x.shape[2]:
            raise _error(val, f"has {val.x.shape[2]} features per step, the training file {train.x.shape[2]}",
                         "both files need the same feature columns")
        if tt.kind == "regression" and vt.y.shape[-1] != tt.y.shape[-1]:
            raise _error(val, f"has targets of size {vt.y.shape[-1]}, the training file {tt.y.shape[-1]}",
                         "both files need the same targets")
    info: dict[str, Any] = {"path": cfg.path, "val_path": cfg.val_path, "features": int(train.x.shape[2])}

    if tt.kind == "classification":
        classes = class_list(train, tt)
        if len(classes) < 2:
            raise _error(train, f"classification needs at least 2 classes, found {len(classes)} ({classes.tolist()})",
                         "check the label column, or set task.kind=regression")
        y_all = encode_labels(train, tt, classes)
        y_val = encode_labels(val, vt, classes) if val else None
        output_dim = len(classes)
        info["classes"] = {i: (c.item() if hasattr(c, "item") else c) for i, c in enumerate(classes)}
    else:
        y_all, y_val = tt.y.astype(np.float32), (vt.y.astype(np.float32) if val else None)
        output_dim = int(tt.y.shape[-1])

    x_all, l_all = train.x.astype(np.float64), train.lengths
    if val is None:
        strata = y_all if tt.kind == "classification" and not tt.per_step else None
        tr, va = split_indices(len(x_all), cfg, strata)
        x_tr, y_tr, l_tr = x_all[tr], y_all[tr], l_all[tr]
        x_va, y_va, l_va = x_all[va], y_all[va], l_all[va]
    else:
        x_tr, y_tr, l_tr = x_all, y_all, l_all
        x_va, y_va, l_va = val.x.astype(np.float64), y_val, val.lengths

    # One length for both splits; padding is zero and lies beyond every sequence's length.
    t = max(int(l_tr.max()), int(l_va.max()))
    x_tr, x_va = _pad_steps(x_tr[:, :t], t), _pad_steps(x_va[:, :t], t)
    if tt.per_step:
        y_tr, y_va = _pad_steps(y_tr[:, :t], t), _pad_steps(y_va[:, :t], t)
    valid_tr, valid_va = _valid_steps(l_tr, t), _valid_steps(l_va, t)
    if cfg.normalize:
        steps = x_tr[valid_tr]  # [valid steps, F]: statistics over real steps only
        mean, std = steps.mean(axis=0), steps.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)  # a constant feature is only centred
        x_tr, x_va = (x_tr - mean) / std, (x_va - mean) / std
    x_tr, x_va = np.where(valid_tr[..., None], x_tr, 0.0), np.where(valid_va[..., None], x_va, 0.0)
    if tt.per_step:  # padded targets are never scored; make them harmless zeros
        mask_tr = valid_tr if y_tr.ndim == 2 else valid_tr[..., None]
        mask_va = valid_va if y_va.ndim == 2 else valid_va[..., None]
        y_tr, y_va = np.where(mask_tr, y_tr, 0).astype(y_tr.dtype), np.where(mask_va, y_va, 0).astype(y_va.dtype)
    full = bool((l_tr == t).all() and (l_va == t).all())

    def tensor(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)

    ydtype = torch.int64 if tt.kind == "classification" else torch.float32
    return TaskData(
        info=info,
        name="file",
        kind=tt.kind,
        x_train=tensor(x_tr, torch.float32),
        y_train=tensor(y_tr, ydtype),
        x_val=tensor(x_va, torch.float32),
        y_val=tensor(y_va, ydtype),
        output_dim=output_dim,
        lengths_train=None if full else tensor(l_tr, torch.int64),
        lengths_val=None if full else tensor(l_va, torch.int64),
        per_step=tt.per_step,
        tolerance=cfg.tolerance if tt.kind == "regression" else None,
    )
