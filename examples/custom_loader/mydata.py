"""Your own data through a loader: noisy sine waves, classified by their frequency.

`conf/task/waves.yaml` names `load_waves` as `_target_`; lrsweep calls it once with the YAML's
other keys. It returns the arrays an `.npz` file task would hold: `x` [N, T, F], `y` [N] labels
(here 3 classes), and no validation arrays, so lrsweep splits off `val_fraction` itself.
"""

import numpy as np


def load_waves(n: int = 1200, steps: int = 40, noise: float = 0.4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    frequency = np.array([0.05, 0.1, 0.2])[y]
    phase = rng.uniform(0, 2 * np.pi, size=n)
    t = np.arange(steps)
    x = np.sin(2 * np.pi * frequency[:, None] * t[None, :] + phase[:, None])
    x = x + noise * rng.standard_normal((n, steps))
    return {"x": x[..., None].astype(np.float32), "y": y}
