"""What the signals of why a run collapsed cost: the default sweep's training with and without them.

    python benchmarks/bench_signals.py                 # the default sweep (digits, 10 settings x 5
                                                       # seeds x 40 epochs), 1 thread, both ways
    python benchmarks/bench_signals.py --epochs 10     # shorter runs (the same per-epoch work)
    python benchmarks/bench_signals.py --packing on    # packed seeds (what a GPU runs)
    python benchmarks/bench_signals.py --smoke         # one setting, 2 seeds, 2 epochs (CI)

Each setting of the default grid (lr 0.01 .. 1 x clip {none, 1.0}, batch size 32) trains its
seeds in this process with `signals.enabled=false` (the baseline) and with the signals on
(`update_ratio` on sampled steps, `crit_lr`, `sat_frac` and `logit_lse` every epoch), twice each
in the order off, on, on, off (ABBA: a drift in a shared machine's speed falls on both alike),
after one warm-up run. It prints the CPU seconds of each (this process's, one thread: steadier
than wall time on a shared machine) and the ratio on / off (the target is <= 1.10), per setting
and in total. Training itself is identical both ways (tests/test_signals.py checks it); only the
time differs.

Measured (2 shared CPU cores, torch 2.13, `--epochs 8 --seeds 2`): 45.29 s off, 48.95 s on,
x1.08 in total (per setting 0.89-1.28: the machine's load; the ABBA total is the number to read).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--packing", default="off", choices=["off", "on"])
    parser.add_argument("--smoke", action="store_true", help="one setting, 2 seeds, 2 epochs")
    parser.add_argument("overrides", nargs="*", help="more config overrides, e.g. task=adding")
    args = parser.parse_args()

    import torch

    from sweep.config import load_config
    from sweep.tasks import build_task
    from sweep.training import train_setting

    torch.set_num_threads(1)  # what every sweep worker uses (threads=1)
    epochs, seeds = (2, 2) if args.smoke else (args.epochs, args.seeds)
    base = [f"epochs={epochs}", f"packing={args.packing}", *args.overrides]
    cfgs = {
        "off": load_config(base + ["signals.enabled=false"]),
        "on": load_config(base),
    }
    task = build_task(cfgs["on"].task)
    grid = cfgs["on"].grid
    settings = [
        {"lr": lr, "clip": clip, "batch_size": bs}
        for lr in grid.lr
        for clip in grid.clip
        for bs in grid.batch_size
    ]
    if args.smoke:
        settings = settings[:1]
    device = torch.device("cpu")
    totals = {"off": 0.0, "on": 0.0}
    print(f"{'setting (CPU seconds)':<34} {'off s':>8} {'on s':>8} {'on/off':>7}")
    train_setting(task, cfgs["on"], settings[0], [0], device)  # warm-up: first calls are slow
    for setting in settings:
        took = {"off": 0.0, "on": 0.0}
        for mode in ("off", "on", "on", "off")[: 2 if args.smoke else 4]:  # ABBA: drifts cancel
            t0 = time.process_time()
            train_setting(task, cfgs[mode], setting, list(range(seeds)), device)
            took[mode] += time.process_time() - t0
        for mode in took:
            totals[mode] += took[mode]
        label = f"lr={setting['lr']:g} clip={setting['clip']} bs={setting['batch_size']}"
        print(f"{label:<34} {took['off']:8.2f} {took['on']:8.2f} {took['on'] / took['off']:7.3f}")
    ratio = totals["on"] / totals["off"]
    print(
        f"{'total':<34} {totals['off']:8.2f} {totals['on']:8.2f} {ratio:7.3f}"
        f"   ({len(settings)} settings x {seeds} seeds x {epochs} epochs, packing={args.packing})"
    )


if __name__ == "__main__":
    main()
