"""A stand-in training function for the function trainer's tests (no framework): the function
twin of fake_train.py, swept as `trainer._target_=fake_fit.fit`.

A run learns (val accuracy rises towards 0.9 of 200 items, chance 0.25) unless lr >= 1 without
clipping, where its loss turns NaN at epoch 3 (lr >= 1 with a clip: it learns, a little worse).
Its state is a small random walk (NumPy's generator, seeded by lrsweep before the call) that
shifts the accuracy, so that a resumed run agrees with an uninterrupted one only when it
resumes from its checkpoint folder: `state.json` there holds the last finished epoch and the
generator's state, written after each report. Each call appends the epoch it starts from to
`starts.txt` in its run folder, and every epoch it trains to `trained.txt`.

Keyword arguments (the trainer node's other keys): sleep (seconds per epoch), crash_at (raise
before epoch N), pids (a file this process's pid is appended to).
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np


def fit(setting, seed, epochs, report, checkpoint_dir, run_dir, sleep=0.0, crash_at=0, pids=None):
    if pids:
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")
    lr, clip = setting["lr"], setting["clip"]
    state_file = os.path.join(checkpoint_dir, "state.json")
    start, walk = 0, 0.0
    rng = np.random.default_rng(np.random.randint(2**31))  # NumPy's global generator: seeded
    if os.path.exists(state_file):
        with open(state_file) as f:
            state = json.load(f)
        start, walk = state["epoch"], state["walk"]
        rng.bit_generator.state = state["rng"]
    with open(os.path.join(run_dir, "starts.txt"), "a") as f:
        f.write(f"{start}\n")
    for k in range(start + 1, epochs + 1):
        if crash_at and k == crash_at:
            raise RuntimeError(f"fake failure at epoch {k}")
        time.sleep(sleep)
        with open(os.path.join(run_dir, "trained.txt"), "a") as f:
            f.write(f"{k}\n")
        walk += float(rng.normal(0, 0.01))
        blown = lr >= 1 and clip is None and k >= 3
        acc = 0.25 + 0.65 * (1 - math.exp(-k / 2)) - (0.05 if clip is not None and lr >= 1 else 0)
        acc = round(min(max(acc + walk, 0.0), 1.0) * 200) / 200
        loss = math.nan if blown else 1.5 * math.exp(-k / 3)
        report(k, val_acc=acc, val_loss=loss + 0.05, train_loss=loss)
        with open(state_file + ".tmp", "w") as f:
            json.dump({"epoch": k, "walk": walk, "rng": rng.bit_generator.state}, f)
        os.replace(state_file + ".tmp", state_file)
