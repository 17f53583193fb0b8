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
from typing import Any

import numpy as np

from sweep.tasks.data import TaskData, task_from_arrays
from sweep.tasks.file_reading import Table, _error, _show, _valid_steps, read_file  # noqa: F401  (read_file: the API)


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
    kind = (
        cfg.kind
        if cfg.kind != "auto"
        else ("classification" if _is_label_dtype(y) else "regression")
    )
    if table.varies is not None:  # long format: y is [N, T, D] by construction
        per_step = table.varies if cfg.per_step is None else cfg.per_step
        if table.varies and not per_step:
            raise _error(
                table,
                "the label changes within a sequence, but task.per_step=false",
                "set task.per_step=true for a target at every step, or give each sequence one label",
            )
        if not per_step:
            y = y[:, 0]  # [N, D]: the label of each sequence's first row (all rows agree)
        if kind == "classification":
            if y.shape[-1] != 1:
                raise _error(
                    table,
                    f"classification needs one label column, got {y.shape[-1]}",
                    "set task.kind=regression for a vector target",
                )
            y = y[..., 0]
    else:
        per_step = cfg.per_step
        if per_step is None:
            per_step = y.ndim == 3 or (y.ndim == 2 and kind == "classification" and y.shape[1] == t)
        if per_step and (y.ndim < 2 or y.shape[1] != t):
            raise _error(
                table,
                f"per-step targets y must have shape [N, T={t}, ...], got shape {y.shape}",
                "set task.per_step=false for one target per sequence",
            )
        want = {
            ("classification", False): (1,),
            ("classification", True): (2,),
            ("regression", False): (1, 2),
            ("regression", True): (2, 3),
        }[kind, per_step]
        if y.ndim not in want:
            shapes = {
                ("classification", False): "[N] (one class per sequence)",
                ("classification", True): "[N, T] (one class per step)",
                ("regression", False): "[N] or [N, D]",
                ("regression", True): "[N, T] or [N, T, D]",
            }
            raise _error(
                table,
                f"{kind} targets y must have shape {shapes[kind, per_step]}, got shape {y.shape}",
                "check task.kind and task.per_step (auto: integer y is classification, float y regression)",
            )
        if kind == "regression" and y.ndim == (2 if per_step else 1):
            y = y[..., None]
    if kind == "regression":
        if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
            raise _error(
                table,
                f"regression targets must be numbers, got dtype {y.dtype}",
                "set task.kind=classification for class labels",
            )
        y = y.astype(np.float64)
        valid = _valid_steps(table.lengths, t) if per_step else np.ones(len(y), dtype=bool)
        bad = ~np.isfinite(y).all(axis=-1) & valid
        if bad.any():
            where = np.argwhere(bad)[0]
            at = f"sequence {where[0]}" + (f", step {where[1]}" if per_step else "")
            raise _error(
                table, f"targets y hold NaN or inf (first at {at})", "remove or fill those values"
            )
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
            raise _error(
                table,
                f"class labels must be integers or strings, got {_show(bad)}",
                "set task.kind=regression for real-valued targets",
            )
    if values.dtype == object:
        values = values.astype(str)
    return np.unique(values)


def encode_labels(table: Table, targets: Targets, classes: np.ndarray) -> np.ndarray:
    """Labels -> class ids 0..C-1 (sorted distinct values); padded steps become class 0."""
    y = targets.y.astype(str) if targets.y.dtype == object else targets.y
    ids = np.searchsorted(classes, y).clip(0, len(classes) - 1)
    known = classes[ids] == y
    valid = (
        _valid_steps(table.lengths, table.x.shape[1])
        if targets.per_step
        else np.ones(len(y), dtype=bool)
    )
    unknown = valid & ~known
    if unknown.any():
        label = y[unknown][0]
        raise _error(
            table,
            f"label {_show(label)} does not occur in the training data (task.path)",
            "every validation class must also appear in training",
        )
    return np.where(valid, ids, 0).astype(np.int64)


# --------------------------------------------------------------------------- split, scale, pack


def split_indices(n: int, cfg: Any, strata: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Fixed train/validation indices: `val_fraction` of the sequences, stratified when possible."""
    n_val = int(round(n * cfg.val_fraction))
    if n_val < 1 or n - n_val < 1:
        raise _error(
            "task.val_fraction",
            f"{cfg.val_fraction} of {n} sequences leaves {n - n_val} for training "
            f"and {n_val} for validation",
            "give more sequences, change task.val_fraction, or pass task.val_path",
        )
    if strata is not None:
        counts = np.unique(strata, return_counts=True)[1]
        if counts.min() >= 2 and min(n_val, n - n_val) >= len(counts):
            from sklearn.model_selection import train_test_split

            train, val = train_test_split(
                np.arange(n), test_size=n_val, random_state=cfg.data_seed, stratify=strata
            )
            return np.sort(train), np.sort(val)
    perm = np.random.default_rng(cfg.data_seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _pad_steps(a: np.ndarray, t: int) -> np.ndarray:
    return np.pad(a, [(0, 0), (0, t - a.shape[1])] + [(0, 0)] * (a.ndim - 2))


def build_file(cfg: Any) -> TaskData:
    """The file task's TaskData (see the module docstring for formats and rules)."""
    train = read_file(cfg.path, cfg, "task.path")
    val = read_file(cfg.val_path, cfg, "task.val_path") if cfg.val_path else None
    info: dict[str, Any] = {"path": cfg.path, "val_path": cfg.val_path}
    return build_from_tables(train, val, cfg, "file", info)


def build_from_tables(
    train: Table, val: Table | None, cfg: Any, name: str, info: dict[str, Any]
) -> TaskData:
    """A TaskData from the training table and an optional validation table (else a split of
    `cfg.val_fraction`): targets read, classes encoded, features standardised, padding zeroed."""
    tokens = train.vocab_size is not None
    tt = interpret_targets(train, cfg)
    vt = (
        interpret_targets(val, dataclasses.replace(cfg, kind=tt.kind, per_step=tt.per_step))
        if val
        else None
    )
    features = 1 if tokens else train.x.shape[2]
    if val is not None:
        if not tokens and val.x.shape[2] != features:
            raise _error(
                val,
                f"has {val.x.shape[2]} features per step, the training data {features}",
                "both need the same feature columns",
            )
        if tt.kind == "regression" and vt.y.shape[-1] != tt.y.shape[-1]:
            raise _error(
                val,
                f"has targets of size {vt.y.shape[-1]}, the training data {tt.y.shape[-1]}",
                "both need the same targets",
            )
    info = (
        {**info, "features": int(features)}
        if not tokens
        else {**info, "vocab_size": int(train.vocab_size)}
    )

    if tt.kind == "classification":
        classes = class_list(train, tt)
        if len(classes) < 2:
            raise _error(
                train,
                f"classification needs at least 2 classes, found {len(classes)} ({classes.tolist()})",
                "check the label column, or set task.kind=regression",
            )
        y_all = encode_labels(train, tt, classes)
        y_val = encode_labels(val, vt, classes) if val else None
        output_dim = len(classes)
        info["classes"] = {
            i: (c.item() if hasattr(c, "item") else c) for i, c in enumerate(classes)
        }
    else:
        y_all, y_val = tt.y.astype(np.float32), (vt.y.astype(np.float32) if val else None)
        output_dim = int(tt.y.shape[-1])

    xtype = np.int64 if tokens else np.float64
    x_all, l_all = train.x.astype(xtype), train.lengths
    if val is None:
        strata = y_all if tt.kind == "classification" and not tt.per_step else None
        tr, va = split_indices(len(x_all), cfg, strata)
        x_tr, y_tr, l_tr = x_all[tr], y_all[tr], l_all[tr]
        x_va, y_va, l_va = x_all[va], y_all[va], l_all[va]
    else:
        x_tr, y_tr, l_tr = x_all, y_all, l_all
        x_va, y_va, l_va = val.x.astype(xtype), y_val, val.lengths

    # One length for both splits; padding is zero and lies beyond every sequence's length.
    t = max(int(l_tr.max()), int(l_va.max()))
    x_tr, x_va = _pad_steps(x_tr[:, :t], t), _pad_steps(x_va[:, :t], t)
    if tt.per_step:
        y_tr, y_va = _pad_steps(y_tr[:, :t], t), _pad_steps(y_va[:, :t], t)
    valid_tr, valid_va = _valid_steps(l_tr, t), _valid_steps(l_va, t)
    if cfg.normalize and not tokens:
        steps = x_tr[valid_tr]  # [valid steps, F]: statistics over real steps only
        mean, std = steps.mean(axis=0), steps.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)  # a constant feature is only centred
        x_tr, x_va = (x_tr - mean) / std, (x_va - mean) / std
    step_axis = (lambda m: m) if tokens else (lambda m: m[..., None])
    x_tr, x_va = np.where(step_axis(valid_tr), x_tr, 0), np.where(step_axis(valid_va), x_va, 0)
    if tt.per_step:  # padded targets are never scored; make them harmless zeros
        mask_tr = valid_tr if y_tr.ndim == 2 else valid_tr[..., None]
        mask_va = valid_va if y_va.ndim == 2 else valid_va[..., None]
        y_tr, y_va = (
            np.where(mask_tr, y_tr, 0).astype(y_tr.dtype),
            np.where(mask_va, y_va, 0).astype(y_va.dtype),
        )
    full = bool((l_tr == t).all() and (l_va == t).all())

    ydtype = np.int64 if tt.kind == "classification" else np.float32
    xdtype = np.int64 if tokens else np.float32
    train_arrays = (
        x_tr.astype(xdtype),
        y_tr.astype(ydtype),
        None if full else l_tr.astype(np.int64),
    )
    val_arrays = (x_va.astype(xdtype), y_va.astype(ydtype), None if full else l_va.astype(np.int64))
    return task_from_arrays(
        name,
        tt.kind,
        train_arrays,
        val_arrays,
        output_dim=output_dim,
        per_step=tt.per_step,
        tolerance=cfg.tolerance if tt.kind == "regression" else None,
        info=info,
        vocab_size=train.vocab_size,
    )
