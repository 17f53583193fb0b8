"""Synthetic long-range tasks generated in-process from a data seed (no downloads).

Recipes follow Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent neural
networks" (arXiv 1211.5063) and their code (github.com/pascanur/trainingRNNs):

- temporal order: 6 one-hot symbols (0=A, 1=B, 2..5 distractors), 4 classes. With L the length,
  p0 = floor(0.1L) + U{0..floor(0.1L)-1}, p1 = floor(0.5L) + U{0..floor(0.1L)-1}; v0, v1 in {A, B}
  are placed there, every other step holds a distractor U{2..5}; label = v0 + 2*v1.
- adding: 2 channels; length l = L + U{0..floor(0.1L)-1}; channel 1 holds U[0, 1) values,
  channel 0 is 0 except a 1 at p0 in U{0..floor(0.1l)-1} and at p1 = floor(0.1l) +
  U{0..floor(0.4l)-1}; target (x[p0] + x[p1]) / 2, scored by squared error < 0.04.
  Their code draws one length per minibatch; here each sequence draws its own length and is
  zero-padded to the longest, with `lengths` telling the model where each one ends.
"""

from __future__ import annotations

import numpy as np
import torch

from sweep.tasks.data import TaskData


def temporal_order_arrays(rng: np.random.Generator, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """n sequences [n, L, 6] one-hot float32 and labels [n] int64."""
    tenth = int(length * 0.1)
    p0 = rng.integers(0, tenth, size=n) + tenth
    p1 = rng.integers(0, tenth, size=n) + int(length * 0.5)
    v0 = rng.integers(0, 2, size=n)
    v1 = rng.integers(0, 2, size=n)
    symbols = rng.integers(0, 4, size=(n, length)) + 2
    rows = np.arange(n)
    symbols[rows, p0] = v0
    symbols[rows, p1] = v1
    x = np.eye(6, dtype=np.float32)[symbols]
    y = (v0 + 2 * v1).astype(np.int64)
    return x, y


def adding_arrays(
    rng: np.random.Generator, n: int, length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n sequences [n, Lmax, 2] float32 (zero-padded), targets [n, 1], lengths [n]."""
    lengths = length + rng.integers(0, int(length * 0.1), size=n)
    t_max = int(lengths.max())
    x = np.zeros((n, t_max, 2), dtype=np.float32)
    values = rng.random((n, t_max), dtype=np.float32)
    steps = np.arange(t_max)[None, :]
    x[:, :, 1] = np.where(steps < lengths[:, None], values, 0.0)
    p0 = rng.integers(0, (lengths * 0.1).astype(np.int64))
    p1 = rng.integers(0, (lengths * 0.4).astype(np.int64)) + (lengths * 0.1).astype(np.int64)
    rows = np.arange(n)
    x[rows, p0, 0] = 1.0
    x[rows, p1, 0] = 1.0
    y = ((x[rows, p0, 1] + x[rows, p1, 1]) / 2.0).astype(np.float32)[:, None]
    return x, y, lengths.astype(np.int64)


def build_temporal_order(cfg) -> TaskData:
    rng = np.random.default_rng(cfg.data_seed)
    x_tr, y_tr = temporal_order_arrays(rng, cfg.n_train, cfg.length)
    x_va, y_va = temporal_order_arrays(rng, cfg.n_val, cfg.length)
    return TaskData(
        name="temporal_order",
        kind="classification",
        x_train=torch.from_numpy(x_tr),
        y_train=torch.from_numpy(y_tr),
        x_val=torch.from_numpy(x_va),
        y_val=torch.from_numpy(y_va),
        output_dim=4,
    )


def build_adding(cfg) -> TaskData:
    rng = np.random.default_rng(cfg.data_seed)
    x_tr, y_tr, l_tr = adding_arrays(rng, cfg.n_train, cfg.length)
    x_va, y_va, l_va = adding_arrays(rng, cfg.n_val, cfg.length)
    t_max = max(x_tr.shape[1], x_va.shape[1])
    x_tr = np.pad(x_tr, ((0, 0), (0, t_max - x_tr.shape[1]), (0, 0)))
    x_va = np.pad(x_va, ((0, 0), (0, t_max - x_va.shape[1]), (0, 0)))
    return TaskData(
        name="adding",
        kind="regression",
        x_train=torch.from_numpy(x_tr),
        y_train=torch.from_numpy(y_tr),
        x_val=torch.from_numpy(x_va),
        y_val=torch.from_numpy(y_va),
        output_dim=1,
        lengths_train=torch.from_numpy(l_tr),
        lengths_val=torch.from_numpy(l_va),
        tolerance=cfg.tolerance,
    )
