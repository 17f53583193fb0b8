"""A stand-in training script that starts from a checkpoint (issue 28), for the command trainer's
tests: no framework, starts in milliseconds.

    python fake_start_train.py --init PATH --initial-epoch N --epochs E --lr LR --clip C --seed S
        --log metrics.csv --ckpt DIR [--sleep S]

The checkpoint (`--init`) is JSON: {"acc": 0.85}, what the network knew when it was saved. Each
epoch N+1..N+E keeps that accuracy, give or take a seeded random walk, unless lr >= 0.5 without
clipping: then it loses everything (chance, 0.25) from epoch N+3 on. The log is Keras's CSVLogger
with `initial_epoch=N`: epochs numbered N, N+1, ... (counted from 0). `--ckpt DIR` holds the run's
own progress (the epoch and the walk), so a run killed and started again continues where it was.
"""

import argparse
import json
import os
import random
import time

p = argparse.ArgumentParser()
p.add_argument("--init", required=True)
p.add_argument("--initial-epoch", type=int, required=True)
p.add_argument("--epochs", type=int, required=True)
p.add_argument("--lr", type=float, required=True)
p.add_argument("--clip", default="none")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--log", required=True)
p.add_argument("--ckpt", required=True)
p.add_argument("--sleep", type=float, default=0.0)
a = p.parse_args()

with open(a.init) as f:
    known = json.load(f)["acc"]
state_file = os.path.join(a.ckpt, "state.json")
done, walk, rng_state = 0, 0.0, None
if os.path.exists(state_file):
    with open(state_file) as f:
        saved = json.load(f)
    done, walk, rng_state = saved["done"], saved["walk"], saved["rng"]
rng = random.Random(a.seed)
if rng_state is not None:
    rng.setstate((rng_state[0], tuple(rng_state[1]), rng_state[2]))
with open(a.log, "a" if done else "w") as log:
    if not done:
        log.write("epoch,accuracy,loss,val_accuracy,val_loss\n")
    for i in range(done, a.epochs):
        time.sleep(a.sleep)
        walk += rng.gauss(0, 0.01)
        lost = a.lr >= 0.5 and a.clip == "none" and i >= 2
        acc = 0.25 if lost else min(max(known + walk, 0.0), 1.0)
        acc = round(acc * 200) / 200
        loss = 1.4 if lost else 0.3 - walk
        log.write(f"{a.initial_epoch + i},{acc},{loss},{acc},{loss + 0.05}\n")
        log.flush()
        with open(state_file + ".tmp", "w") as f:
            json.dump({"done": i + 1, "walk": walk, "rng": rng.getstate()}, f)
        os.replace(state_file + ".tmp", state_file)
