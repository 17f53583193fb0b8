"""scikit-learn's handwritten digits read row by row: 8 steps of 8 pixel values, 10 classes.

The data (1797 images of 8x8 pixels, values 0..16) ships inside scikit-learn, so nothing is
downloaded. Pixels are scaled to [0, 1]; the validation split is stratified and fixed by
`data_seed`.
"""

from __future__ import annotations

import numpy as np
import torch

from sweep.tasks.data import TaskData


def build_digits(cfg) -> TaskData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)  # [1797, 8 rows = steps, 8 columns = features]
    y = digits.target.astype(np.int64)
    x_tr, x_va, y_tr, y_va = train_test_split(
        x, y, test_size=cfg.val_fraction, random_state=cfg.data_seed, stratify=y
    )
    return TaskData(
        name="digits",
        kind="classification",
        x_train=torch.from_numpy(np.ascontiguousarray(x_tr)),
        y_train=torch.from_numpy(y_tr),
        x_val=torch.from_numpy(np.ascontiguousarray(x_va)),
        y_val=torch.from_numpy(y_va),
        output_dim=10,
    )
