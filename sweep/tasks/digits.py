"""scikit-learn's handwritten digits read row by row: 8 steps of 8 pixel values, 10 classes.

The data (1797 images of 8x8 pixels, values 0..16) ships inside scikit-learn as
`sklearn/datasets/data/digits.csv.gz`, so nothing is downloaded. The file is read directly
(importing scikit-learn's dataset and model-selection modules costs a second and a half of
every sweep's start-up). Pixels are scaled to [0, 1]; the validation split is stratified (the
same share of every class) and fixed by `data_seed`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from sweep.tasks.data import TaskData, task_from_arrays


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images [1797, 8, 8] float 0..16, labels [1797]) from scikit-learn's shipped CSV."""
    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.exists():
            data = np.loadtxt(path, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # another layout: let scikit-learn find it

    digits = load_digits()
    return digits.images, digits.target.astype(np.int64)


def stratified_split(
    y: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): round(val_fraction * n_c) of each class c go to
    validation, chosen by a generator seeded with `seed`; both index lists in shuffled order."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(val_fraction * len(idx)))
        val.append(idx[:k])
        train.append(idx[k:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(val))


def build_digits(cfg) -> TaskData:
    images, y = digits_arrays()
    x = (images / 16.0).astype(np.float32)  # [1797, 8 rows = steps, 8 columns = features]
    tr, va = stratified_split(y, cfg.val_fraction, cfg.data_seed)
    return task_from_arrays(
        "digits", "classification", (x[tr], y[tr]), (x[va], y[va]), output_dim=10
    )
