"""A user's data loader: `task._target_` (a function or class) called with the task node's keys.

It returns a mapping with the array names of an `.npz` file task: `x`, `y`, optional `lengths`,
and optionally `x_val`, `y_val`, `lengths_val` (else `task.val_fraction` is split off), as numpy
arrays or tensors, and optionally `vocab_size` (x then holds token ids [N, T]). The arrays are
checked exactly like a file's, with the same one-line errors naming the loader. It runs once, in
the launcher; workers read the data it prepared.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sweep.core.errors import UserError
from sweep.core.imports import import_target
from sweep.tasks.data import TaskData
from sweep.tasks.file_reading import table_from_arrays
from sweep.tasks.files import build_from_tables

KEY = "task._target_"
FIX = (
    "return a dict like {'x': x, 'y': y} (x [N, T, F], y [N] labels or [N, D] targets; optional lengths, "
    "x_val, y_val, lengths_val, vocab_size)"
)


def _as_array(value: Any) -> Any:
    """numpy arrays and torch tensors (anything with .numpy()) as numpy arrays."""
    if value is None or isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def load_arrays(cfg: Any) -> dict[str, Any]:
    """Call the loader and return its arrays (numpy), checked to be a mapping."""
    loader = import_target(cfg.target, KEY)
    if not callable(loader):
        raise UserError(
            f"{KEY}: {cfg.target!r} is not a function or class that can be called; {FIX}"
        )
    try:
        out = loader(**cfg.kwargs)
    except UserError:
        raise
    except Exception as e:  # the user's code failed: one line, their message
        raise UserError(
            f"{KEY}: loader {cfg.target} raised {type(e).__name__}: {' '.join(str(e).split())[:300]}; "
            f"fix the loader or the keys of the task's YAML (they are its keyword arguments)"
        ) from None
    if not hasattr(out, "keys"):
        raise UserError(
            f"{KEY}: loader {cfg.target} returned {type(out).__name__}, not a mapping of arrays; {FIX}"
        )
    arrays = {str(k): v for k, v in out.items()}
    vocab = arrays.pop("vocab_size", None)
    if vocab is not None and (
        isinstance(vocab, bool) or not isinstance(vocab, (int, np.integer)) or vocab < 2
    ):
        raise UserError(
            f"{KEY}: loader {cfg.target} returned vocab_size={vocab!r}; it must be an integer >= 2 "
            f"(the number of token ids, 0 for padding included) or absent"
        )
    arrays = {k: _as_array(v) for k, v in arrays.items()}
    arrays["vocab_size"] = int(vocab) if vocab is not None else None
    return arrays


def build_loader(cfg: Any) -> TaskData:
    """The TaskData of a loader task (`sweep.config.targets.TargetTask`)."""
    arrays = load_arrays(cfg)
    vocab = arrays.pop("vocab_size")
    source = f"loader {cfg.target}"
    train = table_from_arrays(arrays, KEY, cfg.target, FIX, source=source, vocab_size=vocab)
    val = None
    if arrays.get("x_val") is not None or arrays.get("y_val") is not None:
        val = table_from_arrays(
            arrays, KEY, cfg.target, FIX, source=source, vocab_size=vocab, suffix="_val"
        )
    info = {"target": cfg.target, "kwargs": {k: str(v) for k, v in cfg.kwargs.items()}}
    return build_from_tables(train, val, cfg, cfg.name, info)
