"""GPU acceptance check: run this the first time a CUDA GPU is at hand (a few minutes).

    python benchmarks/gpu_check.py                 # every check, prints a table, exit 1 on a failure
    python benchmarks/gpu_check.py --skip-speed    # without the packed speed-up measurement

What it checks, each against what the CPU test suite can only emulate:

1. packed vs separate training on CUDA, for every case of tests/test_packed.py: the same
   non-finite seeds, curves within the tolerance the CPU tests use;
2. CPU vs GPU `runs.csv` of a small digits grid through the real CLI: the same settings and
   seeds, the same non-finite runs, best accuracy within a tolerance (float rounding differs
   between devices; chaotic high-LR runs can differ more, so the tolerance applies to the
   settings without collapse and the collapse verdicts are compared per setting);
3. host synchronisations per epoch of separate and packed training, counted with
   torch.cuda.set_sync_debug_mode("warn"): at most one per non-finite check plus the
   end-of-epoch reads;
4. cross-device resume: a checkpoint written on the GPU resumes on the CPU and the reverse,
   both finishing with the right number of epochs;
5. the packed speed-up, `bench_sweep.py --packing` (separate vs packed seeds per step on CUDA).

`--smoke` runs the same code on the CPU at toy sizes (CPU against CPU, no sync counting, no
speed-up): CI runs it so that an API change cannot break this script unseen.

Prints one line per check with PASS/FAIL and the figures; record them in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import copy
import math
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the packed-training cases live with their CPU tests

from sweep.config import load_config  # noqa: E402
from sweep.tasks import build_task  # noqa: E402
from sweep.training import SeedGroup, SettingSpec, train_setting  # noqa: E402
from sweep.training.accelerator import configure_device  # noqa: E402
from sweep.training.packed import PackedTrainer  # noqa: E402

RESULTS: list[tuple[str, bool, str]] = []


def report(name: str, ok: bool, detail: str) -> None:
    RESULTS.append((name, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)


def check_packed_vs_separate(device: torch.device, smoke: bool = False) -> None:
    from test_packed import CASES

    for case, (overrides, setting) in sorted(CASES.items())[: 1 if smoke else None]:
        out = {}
        for packing in ("off", "on"):
            cfg = load_config(overrides + [f"packing={packing}"])
            task = build_task(cfg.task).to(device)
            out[packing] = train_setting(task, cfg, setting, [0, 1, 2], device)
        worst, same_nonfinite = 0.0, True
        for a, b in zip(out["off"], out["on"]):
            same_nonfinite &= (a.nonfinite, a.nonfinite_epoch) == (b.nonfinite, b.nonfinite_epoch)
            for col in a.curves:
                x, y = np.asarray(a.curves[col]), np.asarray(b.curves[col])
                if x.shape != y.shape:
                    same_nonfinite = False
                    continue
                scale = np.maximum(np.abs(x), 1.0)
                diff = np.nanmax(np.abs(x - y) / scale) if x.size else 0.0
                worst = max(worst, float(diff) if math.isfinite(diff) else 0.0)
        # The CPU tests allow rtol 2e-3 and 0.005 on accuracies (one flipped prediction).
        report(
            f"packed vs separate [{case}]",
            same_nonfinite and worst < 5e-3,
            f"same non-finite seeds: {same_nonfinite}, largest relative difference {worst:.2e}",
        )


def sweep_runs(device: str, folder: Path, smoke: bool = False) -> pd.DataFrame:
    size = (
        ["epochs=1", "seeds=1", "model.hidden_size=8", "model.layers=1"]
        if smoke
        else ["model.hidden_size=32", "epochs=10", "seeds=3"]
    )
    grid = (
        ["grid.lr=[0.3]", "grid.clip=[null]"]
        if smoke
        else ["grid.lr=[0.03,0.3,3.0]", "grid.clip=[null,1.0]"]
    )
    args = [
        "task=digits",
        *size,
        *grid,
        "grid.batch_size=[64]",
        f"device={device}",
        "workers=1",
        f"results_dir={folder}",
        "study.name=gpu-check",
    ]
    subprocess.run(
        [sys.executable, "-m", "sweep", "run", *args], check=True, cwd=ROOT, capture_output=True
    )
    return pd.read_csv(folder / "gpu-check" / "runs.csv")


def check_cpu_vs_gpu(tmp: Path, smoke: bool = False) -> None:
    cpu, gpu = (
        sweep_runs("cpu", tmp / "cpu", smoke),
        sweep_runs("cpu" if smoke else "cuda", tmp / "gpu", smoke),
    )
    keys = ["lr", "clip", "batch_size", "seed"]
    both = cpu.merge(gpu, on=keys, suffixes=("_cpu", "_gpu"), how="outer", indicator=True)
    same_runs = bool((both["_merge"] == "both").all())
    nonfinite_cpu = set(map(tuple, cpu[cpu["collapse_mode"] == "nonfinite"][keys].values.tolist()))
    nonfinite_gpu = set(map(tuple, gpu[gpu["collapse_mode"] == "nonfinite"][keys].values.tolist()))
    stable = both[(~both["collapsed_cpu"].astype(bool)) & (~both["collapsed_gpu"].astype(bool))]
    diff = (
        float((stable["best_acc_cpu"] - stable["best_acc_gpu"]).abs().max()) if len(stable) else 0.0
    )
    ok = same_runs and nonfinite_cpu == nonfinite_gpu and diff <= 0.02
    report(
        "CPU vs GPU runs.csv",
        ok,
        f"same runs: {same_runs}; non-finite runs CPU {len(nonfinite_cpu)}, "
        f"GPU {len(nonfinite_gpu)}, same: {nonfinite_cpu == nonfinite_gpu}; largest |best_acc diff| "
        f"of stable runs {diff:.4f} (tolerance 0.02)",
    )


def count_syncs(group) -> int:
    """Host synchronisations during one epoch of `group` (warnings from the sync debug mode)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            group.run_epoch()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def check_syncs(device: torch.device, smoke: bool = False) -> None:
    n = 256 if smoke else 2048
    for task_args in (
        ["task=digits"],
        ["task=adding", "task.length=20", f"task.n_train={n}", "task.n_val=256"],
    ):
        cfg = load_config(
            task_args + [f"model.hidden_size={8 if smoke else 32}", "model.layers=1", "epochs=2"]
        )
        task = build_task(cfg.task).to(device)
        setting = {"lr": 0.01, "clip": 1.0, "batch_size": 32}
        groups = (
            SeedGroup(task, SettingSpec.build(cfg, setting, [0]), device),
            PackedTrainer(task, SettingSpec.build(cfg, setting, [0, 1, 2]), device),
        )
        for group in groups:
            steps = math.ceil(task.n_train / 32)
            if device.type != "cuda":  # (--smoke: the groups are built and run, syncs not counted)
                group.run_epoch()
                report(f"epoch on the CPU [{task.name}, {group.mode}]", True, f"{steps} steps")
                continue
            syncs = count_syncs(group)
            # One read per 16 steps per seed, the end-of-epoch statistics and the evaluation.
            limit = (steps // 16 + 1) * (
                1 if group.mode == "packed" else len(group.records_list())
            ) + 12
            report(
                f"host syncs per epoch [{task.name}, {group.mode}]",
                syncs <= limit,
                f"{syncs} syncs for {steps} steps (limit {limit})",
            )


def check_cross_device_resume(device: torch.device, tmp: Path, smoke: bool = False) -> None:
    from sweep.config import config_fingerprint
    from sweep.training import StopRequested
    from sweep.training.checkpoints import Checkpointer

    cpu = torch.device("cpu")
    cfg = load_config(
        [
            f"model.hidden_size={4 if smoke else 16}",
            "model.layers=2",
            "model.dropout=0.2",
            "epochs=3",
        ]
    )
    task = build_task(cfg.task)
    setting = {"lr": 0.1, "clip": 1.0, "batch_size": 64}
    for first, second in ((device, cpu), (cpu, device)):
        folder = tmp / f"ckpt-{first.type}-{second.type}"
        ckpt = Checkpointer(folder, setting, [0, 1], config_fingerprint(cfg), every=1, minutes=0)
        try:
            train_setting(
                task.to(first), cfg, setting, [0, 1], first, ckpt, should_stop=lambda: True
            )
        except StopRequested:
            pass
        records = train_setting(task.to(second), copy.deepcopy(cfg), setting, [0, 1], second, ckpt)
        ok = all(r.epochs_run == 3 for r in records)
        report(
            f"resume {first.type} -> {second.type}",
            ok,
            f"epochs per seed {[r.epochs_run for r in records]}",
        )


def check_speed() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_sweep.py"),
            "--packing",
            "--grid",
            "none",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("packing on cuda")]
    report(
        "packed speed-up (bench_sweep.py --packing)",
        out.returncode == 0,
        " | ".join(lines[-6:]) or out.stderr[-500:],
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument(
        "--smoke", action="store_true", help="the same code on the CPU at toy sizes (no GPU needed)"
    )
    args = ap.parse_args()
    if args.smoke:
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print(
            "no CUDA GPU visible: this script checks the GPU paths and needs one (--smoke runs it on the CPU)",
            file=sys.stderr,
        )
        return 2
    else:
        device = torch.device("cuda", 0)
    print(f"device: {configure_device(device)}; torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        check_packed_vs_separate(device, args.smoke)
        check_syncs(device, args.smoke)
        check_cross_device_resume(device, Path(tmp), args.smoke)
        check_cpu_vs_gpu(Path(tmp), args.smoke)
        if not (args.skip_speed or args.smoke):
            check_speed()
    failed = [name for name, ok, _ in RESULTS if not ok]
    print(
        f"\n{len(RESULTS) - len(failed)}/{len(RESULTS)} checks passed"
        + (f"; failed: {failed}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
