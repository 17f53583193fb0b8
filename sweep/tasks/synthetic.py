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

Two more tasks exercise the other kinds of target (recipes in their functions' docstrings):

- echo: per-step classification (a target at every step, loss and accuracy over all steps).
- vector_sum: regression of a D-dimensional vector, scored by mean squared error < tolerance.
"""

from __future__ import annotations

import numpy as np

from sweep.tasks.data import TaskData, task_from_arrays


def temporal_order_arrays(
    rng: np.random.Generator, n: int, length: int
) -> tuple[np.ndarray, np.ndarray]:
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
    return task_from_arrays(
        "temporal_order", "classification", (x_tr, y_tr), (x_va, y_va), output_dim=4
    )


def build_adding(cfg) -> TaskData:
    rng = np.random.default_rng(cfg.data_seed)
    x_tr, y_tr, l_tr = adding_arrays(rng, cfg.n_train, cfg.length)
    x_va, y_va, l_va = adding_arrays(rng, cfg.n_val, cfg.length)
    t_max = max(x_tr.shape[1], x_va.shape[1])
    x_tr = np.pad(x_tr, ((0, 0), (0, t_max - x_tr.shape[1]), (0, 0)))
    x_va = np.pad(x_va, ((0, 0), (0, t_max - x_va.shape[1]), (0, 0)))
    return task_from_arrays(
        "adding",
        "regression",
        (x_tr, y_tr, l_tr),
        (x_va, y_va, l_va),
        output_dim=1,
        tolerance=cfg.tolerance,
    )


def echo_arrays(
    rng: np.random.Generator, n: int, length: int, delay: int, symbols: int
) -> tuple[np.ndarray, np.ndarray]:
    """Delayed echo: n sequences [n, L, K] one-hot float32 and per-step targets [n, L] int64.

    Every step holds a symbol s_t drawn uniformly from K = `symbols`, one-hot encoded. The target
    at step t is class s_{t-delay} + 1 (the symbol seen `delay` steps earlier) for t >= delay, and
    class 0 ("nothing to echo yet") for the first `delay` steps: K + 1 classes in all. Solving it
    needs a memory of exactly `delay` steps, like a delayed copy / recall task.
    """
    sym = rng.integers(0, symbols, size=(n, length))
    x = np.eye(symbols, dtype=np.float32)[sym]
    y = np.zeros((n, length), dtype=np.int64)
    y[:, delay:] = sym[:, : length - delay] + 1
    return x, y


def vector_sum_arrays(
    rng: np.random.Generator, n: int, length: int, projection: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Vector regression: n sequences [n, L, F] float32 and targets [n, D] float32.

    Inputs are i.i.d. standard normal, x_t ~ N(0, I_F). The target is y = W s with
    s = sum_t x_t / sqrt(L) (so s ~ N(0, I_F) whatever the length) and W = `projection`, a fixed
    [D, F] matrix with N(0, 1/F) entries drawn once from the data seed: every target component is
    then ~ N(0, 1), and predicting the mean scores (almost) 0 at the default tolerance 0.04. The
    network must integrate its inputs over the whole sequence and read out D > 1 outputs.
    """
    x = rng.standard_normal((n, length, projection.shape[1]), dtype=np.float32)
    s = x.sum(axis=1) / np.sqrt(length)
    y = (s @ projection.T).astype(np.float32)
    return x, y


def build_echo(cfg) -> TaskData:
    rng = np.random.default_rng(cfg.data_seed)
    x_tr, y_tr = echo_arrays(rng, cfg.n_train, cfg.length, cfg.delay, cfg.symbols)
    x_va, y_va = echo_arrays(rng, cfg.n_val, cfg.length, cfg.delay, cfg.symbols)
    return task_from_arrays(
        "echo",
        "classification",
        (x_tr, y_tr),
        (x_va, y_va),
        output_dim=cfg.symbols + 1,
        per_step=True,
    )


def build_vector_sum(cfg) -> TaskData:
    rng = np.random.default_rng(cfg.data_seed)
    projection = (rng.standard_normal((cfg.dim, cfg.features)) / np.sqrt(cfg.features)).astype(
        np.float32
    )
    x_tr, y_tr = vector_sum_arrays(rng, cfg.n_train, cfg.length, projection)
    x_va, y_va = vector_sum_arrays(rng, cfg.n_val, cfg.length, projection)
    return task_from_arrays(
        "vector_sum",
        "regression",
        (x_tr, y_tr),
        (x_va, y_va),
        output_dim=cfg.dim,
        tolerance=cfg.tolerance,
    )
