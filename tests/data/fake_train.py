"""A stand-in training script for the command trainer's tests: no framework, starts in
milliseconds, and behaves as asked.

    python fake_train.py --lr 0.1 --clip none --seed 0 --epochs 8 --log metrics.csv [--ckpt DIR]
        [--format keras|jsonl] [--crash-at N [--crash-once FILE]] [--hang-at N] [--sleep S] [--child]
        [--pids FILE] [--no-log] [--garbage-at N] [--n-val N]

A run learns (val accuracy rises towards 0.9 of 200 items, chance 0.25) unless lr >= 1 without
clipping, where its loss turns NaN at epoch 3 (lr >= 1 with a clip: it learns, a little worse).
--crash-at N exits 1 with a message on stderr before writing epoch N (with --crash-once FILE only
while FILE does not exist: the crash creates it, so the run works when retried); --hang-at N sleeps forever
there; --ckpt DIR resumes from DIR/state.json (the last finished epoch) and writes it each epoch;
--child starts a grandchild process that sleeps (to test that a run's whole group is stopped);
--pids FILE appends this process's (and the child's) pid; --no-log exits 0 without writing a log;
--garbage-at N writes a non-number at epoch N; --n-val N adds an n_val column (JSON lines).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, required=True)
p.add_argument("--clip", default="none")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=8)
p.add_argument("--log", required=True)
p.add_argument("--ckpt")
p.add_argument("--format", default="keras")
p.add_argument("--crash-at", type=int, default=0)
p.add_argument("--hang-at", type=int, default=0)
p.add_argument("--sleep", type=float, default=0.0)
p.add_argument("--child", action="store_true")
p.add_argument("--pids")
p.add_argument("--crash-once")
p.add_argument("--no-log", action="store_true")
p.add_argument("--garbage-at", type=int, default=0)
p.add_argument("--n-val", type=int, default=0)
a = p.parse_args()
if a.no_log:
    sys.exit(0)

clip = None if a.clip == "none" else float(a.clip)
if a.child:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
if a.pids:
    with open(a.pids, "a") as f:
        f.write(f"{os.getpid()}\n" + (f"{child.pid}\n" if a.child else ""))

start = 0
if a.ckpt and os.path.exists(os.path.join(a.ckpt, "state.json")):
    with open(os.path.join(a.ckpt, "state.json")) as f:
        start = json.load(f)["epoch"]
mode = "a" if start else "w"
with open(a.log, mode) as log:
    if a.format == "keras" and not start:
        log.write("epoch,accuracy,loss,val_accuracy,val_loss\n")
    for epoch in range(start, a.epochs):  # Keras counts epochs from 0
        if (
            a.crash_at
            and epoch + 1 == a.crash_at
            and not (a.crash_once and os.path.exists(a.crash_once))
        ):
            if a.crash_once:
                open(a.crash_once, "w").close()
            print(
                "Traceback (most recent call last):\nRuntimeError: CUDA out of memory (fake)",
                file=sys.stderr,
            )
            sys.exit(1)
        if a.hang_at and epoch + 1 == a.hang_at:
            time.sleep(600)
        time.sleep(a.sleep)
        k = epoch + 1
        blown = a.lr >= 1 and clip is None and k >= 3
        wobble = ((a.seed * 7 + k * 3) % 5) / 200
        acc = (
            0.25
            + (0.9 - 0.25) * (1 - math.exp(-k / 2))
            - (0.05 if clip is not None and a.lr >= 1 else 0)
            + wobble
        )
        acc = round(min(acc, 1.0) * 200) / 200
        loss = float("nan") if blown else 1.5 * math.exp(-k / 3)
        val_loss = float("nan") if blown else 1.6 * math.exp(-k / 3) + 0.05
        if a.format == "jsonl":
            row = {"epoch": k, "val_acc": acc, "val_loss": val_loss, "train_loss": loss}
            log.write(json.dumps({**row, **({"n_val": a.n_val} if a.n_val else {})}) + "\n")
        elif a.garbage_at == k:
            log.write(f"{epoch},{acc:.4f},{loss},oops,{val_loss}\n")
        else:
            log.write(f"{epoch},{acc:.4f},{loss},{acc},{val_loss}\n")
        log.flush()
        if a.ckpt:
            with open(os.path.join(a.ckpt, "state.json"), "w") as f:
                json.dump({"epoch": k}, f)
        if blown:  # like Keras's TerminateOnNaN: the epoch is logged, then training stops
            break
