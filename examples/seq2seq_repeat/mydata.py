"""Sequence reversal of real values, a generated seq2seq regression: read a sequence of numbers in
[-1, 1], output it backwards. A prediction step counts as correct when its squared error is below
`task.tolerance` (0.04), as in Pascanu et al. (2013).

`load_reversal` is what `conf/task/reversal.yaml` names as `_target_`: lrsweep calls it once (in
the launcher) with the YAML's other keys and reads the arrays it returns.
"""

import numpy as np


def load_reversal(n: int = 2000, n_val: int = 400, length: int = 8, seed: int = 0) -> dict:
    """x [N, T, 1] values, y [N, T, 1] the same values reversed (per-step regression targets)."""
    rng = np.random.default_rng(seed)

    def sample(count):
        x = rng.uniform(-1, 1, size=(count, length, 1)).astype(np.float32)
        return x, x[:, ::-1].copy()

    x, y = sample(n)
    x_val, y_val = sample(n_val)
    return {"x": x, "y": y, "x_val": x_val, "y_val": y_val}
