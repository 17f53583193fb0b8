"""lrsweep vs the plain PyTorch loop users write, on the same mini-grids, in one invocation.

    python benchmarks/bench_sweep.py            # both grids, prints times and ratios
    python benchmarks/bench_sweep.py --grid stable --check
    python benchmarks/bench_sweep.py --smoke     # toy sizes, no targets: that it runs (CI)

(a) baseline: for every (setting, seed), one model trained through a DataLoader over a
    TensorDataset with shuffling, sequentially, with PyTorch's default thread count; NaN runs
    keep training to the last epoch, as a plain loop does.
(b) lrsweep: `sweep run` with its defaults for this machine (worker processes, one thread
    each, data resident on the device, non-finite seeds stopped), timed end to end including
    start-up, storage writes and the report.

Both train the same task data, model, optimizer, epochs, settings and seeds; the script checks
that both produced the same settings and number of runs, that the same settings blew up, and
that the per-setting mean best accuracies are comparable. With --check it exits non-zero when
a target ratio (1.6x on the stable grid, 2.5x on the blow-up grid) is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parent.parent

GRIDS = {
    # No run blows up: 2-layer LSTM on digits (the default model), SGD + momentum, a batch-size
    # axis as users sweep it.
    "stable": {
        "overrides": [
            "task=digits",
            "optimizer=sgd",
            "epochs=20",
            "seeds=3",
            "grid.lr=[0.03,0.1,0.3]",
            "grid.clip=[null,1.0]",
            "grid.batch_size=[16,32,64]",
        ],
        "target": 1.6,
    },
    # A third of the settings (lr=3 without clipping) go non-finite in their first epoch.
    "blowup": {
        "overrides": [
            "task=adding",
            "task.length=20",
            "task.n_train=2000",
            "task.n_val=500",
            "model.layers=1",
            "optimizer=sgd",
            "epochs=10",
            "seeds=3",
            "grid.lr=[0.01,0.1,3.0]",
            "grid.clip=[null]",
            "grid.batch_size=[16,32,64]",
        ],
        "target": 2.5,
    },
}


# ----------------------------------------------------------------------------- the baseline


class Net(nn.Module):
    def __init__(self, cell: str, n_in: int, hidden: int, layers: int, n_out: int) -> None:
        super().__init__()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(n_in, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x, lengths=None):
        if lengths is not None:
            x = nn.utils.rnn.pack_padded_sequence(
                x, lengths, batch_first=True, enforce_sorted=False
            )
        _, state = self.rnn(x)
        h = state[0] if isinstance(state, tuple) else state
        return self.head(h[-1])


def baseline(cfg, task) -> pd.DataFrame:
    """The loop a user writes: DataLoader, one model at a time, no early stop on NaN."""
    rows = []
    regression = task.kind == "regression"
    tensors = [task.x_train, task.y_train] + (
        [task.lengths_train] if task.lengths_train is not None else []
    )
    for setting in cfg.grid.settings():
        for seed in range(cfg.seeds):
            torch.manual_seed(seed)
            model = Net(
                cfg.model.name,
                task.input_dim,
                cfg.model.hidden_size,
                cfg.model.layers,
                task.output_dim,
            )
            opt = torch.optim.SGD(
                model.parameters(), lr=setting["lr"], momentum=cfg.optimizer.momentum
            )
            loader = DataLoader(
                TensorDataset(*tensors), batch_size=setting["batch_size"], shuffle=True
            )
            best = -math.inf
            for _ in range(cfg.epochs):
                model.train()
                for batch in loader:
                    x, y = batch[0], batch[1]
                    lengths = batch[2] if len(batch) > 2 else None
                    out = model(x, lengths)
                    loss = (
                        ((out - y) ** 2).mean()
                        if regression
                        else nn.functional.cross_entropy(out, y)
                    )
                    opt.zero_grad()
                    loss.backward()
                    if setting["clip"] is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), setting["clip"])
                    opt.step()
                model.eval()
                with torch.no_grad():
                    out = model(task.x_val, task.lengths_val)
                    if regression:
                        acc = float(
                            (((out - task.y_val) ** 2).mean(-1) < task.tolerance).float().mean()
                        )
                    else:
                        acc = float((out.argmax(-1) == task.y_val).float().mean())
                if math.isfinite(acc) and not (regression and not torch.isfinite(out).all()):
                    best = max(best, acc)
            rows.append(
                {
                    **setting,
                    "seed": seed,
                    "best_acc": best if best > -math.inf else math.nan,
                    "nonfinite": not all(torch.isfinite(p).all() for p in model.parameters()),
                }
            )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- lrsweep


def lrsweep(
    overrides: list[str], workdir: Path, extra: list[str]
) -> tuple[float, pd.DataFrame, pd.DataFrame]:
    results = workdir / "results"
    cmd = [
        sys.executable,
        "-m",
        "sweep",
        "run",
        *overrides,
        *extra,
        f"results_dir={results}",
        "study.name=bench",
    ]
    start = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if p.returncode != 0:
        raise SystemExit(f"sweep run failed ({p.returncode}):\n{p.stderr}")
    return (
        seconds,
        pd.read_csv(results / "bench" / "runs.csv"),
        pd.read_csv(results / "bench" / "summary.csv"),
    )


def compare(base: pd.DataFrame, runs: pd.DataFrame, chance: float) -> dict:
    """Same settings and runs; same settings blew up; per-setting mean best accuracies close."""
    key = ["lr", "clip", "batch_size"]
    b = base.copy()
    b["best_acc"] = b["best_acc"].fillna(
        chance
    )  # lrsweep scores a run with no finite epoch as chance
    b_set = b.groupby(key, dropna=False).agg(
        n=("seed", "size"), acc=("best_acc", "mean"), nan=("nonfinite", "sum")
    )
    r_set = runs.groupby(key, dropna=False).agg(
        n=("seed", "size"),
        acc=("best_acc", "mean"),
        nan=("nonfinite", lambda s: int(s.notna().sum())),
    )
    joined = b_set.add_suffix("_base").join(r_set.add_suffix("_sweep"), how="outer")
    return {
        "settings_base": len(b_set),
        "settings_sweep": len(r_set),
        "runs_base": int(b_set["n"].sum()),
        "runs_sweep": int(r_set["n"].sum()),
        "nonfinite_settings_base": int((joined["nan_base"] > 0).sum()),
        "nonfinite_settings_sweep": int((joined["nan_sweep"] > 0).sum()),
        "max_abs_diff_mean_best_acc": float((joined["acc_base"] - joined["acc_sweep"]).abs().max()),
    }


SMOKE = ["epochs=1", "seeds=1", "grid.batch_size=[64]", "model.hidden_size=8"]


def bench(name: str, extra: list[str], smoke: bool = False) -> dict:
    from sweep.config import load_config
    from sweep.tasks import build_task

    spec = dict(GRIDS[name])
    if smoke:
        spec["overrides"] = spec["overrides"] + SMOKE
    cfg = load_config(spec["overrides"])
    task = build_task(cfg.task)
    threads = torch.get_num_threads()
    start = time.perf_counter()
    base = baseline(cfg, task)
    t_base = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        t_sweep, runs, summary = lrsweep(spec["overrides"], Path(tmp), extra)
    agree = compare(base, runs, task.chance())
    return {
        "grid": name,
        "baseline_s": round(t_base, 1),
        "baseline_threads": threads,
        "lrsweep_s": round(t_sweep, 1),
        "ratio": round(t_base / t_sweep, 2),
        "target": spec["target"],
        **agree,
    }


def packing_throughput(
    device: str, hidden_sizes=(32, 64, 128), seeds: int = 5, epochs: int = 2
) -> list[dict]:
    """Seed-epochs per second of one setting trained packed vs one model at a time (same device,
    same data, same seeds): the gain of training the seeds of a setting as one model."""
    from sweep.config import load_config
    from sweep.tasks import build_task
    from sweep.training import train_setting
    from sweep.training.accelerator import configure_device

    dev = torch.device("cuda", 0) if device == "cuda" else torch.device(device)
    configure_device(dev)  # as a worker does: the GPU index, full FP32
    out = []
    for hidden in hidden_sizes:
        row = {"device": device, "hidden_size": hidden, "seeds": seeds}
        for packing in ("off", "on"):
            cfg = load_config(
                [
                    "model.layers=1",
                    f"model.hidden_size={hidden}",
                    f"epochs={epochs}",
                    f"packing={packing}",
                    "task=temporal_order",
                    "task.length=30",
                    "task.n_train=2000",
                    "task.n_val=500",
                ]
            )
            task = build_task(cfg.task).to(dev)
            setting = {"lr": 0.01, "clip": 1.0, "batch_size": 32}
            train_setting(task, cfg, setting, [0], dev)  # warm-up (kernels, allocator)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            train_setting(task, cfg, setting, list(range(seeds)), dev)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            row[f"{packing}_seed_epochs_per_s"] = round(
                seeds * epochs / (time.perf_counter() - start), 2
            )
        row["packed_speedup"] = round(row["on_seed_epochs_per_s"] / row["off_seed_epochs_per_s"], 2)
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--grid",
        choices=[*GRIDS, "all", "none"],
        default="all",
        help="which grid to run (none: only --packing)",
    )
    ap.add_argument("--check", action="store_true", help="exit 1 when a target ratio is missed")
    ap.add_argument(
        "--packing",
        action="store_true",
        help="also measure packed vs separate seeds (CPU; CUDA too when present)",
    )
    ap.add_argument(
        "--smoke", action="store_true", help="toy sizes (1 seed, 1 epoch), no targets: that it runs"
    )
    ap.add_argument("overrides", nargs="*", help="extra overrides for sweep run (e.g. packing=on)")
    args = ap.parse_args()
    names = list(GRIDS) if args.grid == "all" else [] if args.grid == "none" else [args.grid]
    print(
        f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"CUDA {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}"
    )
    results = []
    for name in names:
        r = bench(name, args.overrides, args.smoke)
        results.append(r)
        print(
            f"{name:7} baseline {r['baseline_s']:7.1f} s   lrsweep {r['lrsweep_s']:7.1f} s   "
            f"ratio {r['ratio']:.2f}x (target {r['target']}x)   runs {r['runs_base']}/{r['runs_sweep']}   "
            f"non-finite settings {r['nonfinite_settings_base']}/{r['nonfinite_settings_sweep']}   "
            f"max |diff| mean best acc {r['max_abs_diff_mean_best_acc']:.3f}",
            flush=True,
        )
    if args.packing:
        torch.set_num_threads(1)
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for device in devices:
            for row in packing_throughput(device):
                results.append(row)
                print(
                    f"packing on {device}: hidden {row['hidden_size']:4}  separate "
                    f"{row['off_seed_epochs_per_s']:7.2f}  "
                    f"packed {row['on_seed_epochs_per_s']:7.2f} seed-epochs/s  -> {row['packed_speedup']:.2f}x"
                    + ("  (GPU target >= 10x for hidden <= 128)" if device == "cuda" else ""),
                    flush=True,
                )
    print(json.dumps(results, indent=1))
    if args.check and not args.smoke:
        grids = [r for r in results if "grid" in r]
        missed = [r["grid"] for r in grids if r["ratio"] < r["target"]]
        bad = [
            r["grid"]
            for r in grids
            if r["runs_base"] != r["runs_sweep"]
            or r["nonfinite_settings_base"] != r["nonfinite_settings_sweep"]
        ]
        if missed or bad:
            raise SystemExit(f"targets missed: {missed}; disagreeing results: {bad}")


if __name__ == "__main__":
    main()
