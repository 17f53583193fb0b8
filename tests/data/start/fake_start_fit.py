"""A stand-in training function that starts from a checkpoint (issue 28), the function twin of
fake_start_train.py, swept as `trainer._target_=fake_start_fit.fit`.

The checkpoint (`init_checkpoint`) is JSON: {"acc": 0.85}. Each epoch start_epoch+1.. keeps that
accuracy, give or take a random walk (NumPy's generator, seeded by lrsweep before the call), unless
lr >= 0.5 without clipping: then it loses everything from the third epoch on. Epochs are reported
as start_epoch + 1, start_epoch + 2, ...; `checkpoint_dir/state.json` holds the run's progress,
so a run killed and started again continues where it was.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np


def fit(
    setting, seed, epochs, report, checkpoint_dir, init_checkpoint=None, start_epoch=0, sleep=0.0
):
    with open(init_checkpoint) as f:
        known = json.load(f)["acc"]
    state_file = os.path.join(checkpoint_dir, "state.json")
    done, walk = 0, 0.0
    rng = np.random.default_rng(np.random.randint(2**31))
    if os.path.exists(state_file):
        with open(state_file) as f:
            saved = json.load(f)
        done, walk = saved["done"], saved["walk"]
        rng.bit_generator.state = saved["rng"]
    for i in range(done, epochs):
        time.sleep(sleep)
        walk += float(rng.normal(0, 0.01))
        lost = setting["lr"] >= 0.5 and setting["clip"] is None and i >= 2
        acc = round((0.25 if lost else min(max(known + walk, 0.0), 1.0)) * 200) / 200
        loss = 1.4 if lost else 0.3 - walk
        report(start_epoch + i + 1, val_acc=acc, val_loss=loss + 0.05, train_loss=loss)
        with open(state_file + ".tmp", "w") as f:
            json.dump({"done": i + 1, "walk": walk, "rng": rng.bit_generator.state}, f)
        os.replace(state_file + ".tmp", state_file)
