"""What starting the workers costs: CPU workers forked from the launcher vs a fresh interpreter each.

    python benchmarks/bench_worker_start.py               # workers=4, 3 rounds
    python benchmarks/bench_worker_start.py --workers 8   # more workers
    python benchmarks/bench_worker_start.py --smoke       # workers=2, 1 round: that it runs (CI)

Each round runs the same tiny sweep (one epoch of a 4-unit LSTM per setting, as many settings as
workers, so every worker trains) twice with `python -m sweep run`, once with
`LRSWEEP_WORKER_START=exec` (the baseline: every worker a fresh interpreter that imports torch,
optuna and lrsweep) and once forked (the default on Linux), in alternating order. It prints the
median wall time and the median CPU time of the whole process tree (the launcher, its workers)
of each, and the ratios. Training is the same small amount in both, so the difference is what
the start of the workers costs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_sweep(folder: Path, workers: int, start: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the launcher and every worker it waited for)."""
    lrs = ",".join(f"{0.01 * (i + 1):g}" for i in range(workers))
    args = [
        sys.executable,
        "-m",
        "sweep",
        "run",
        "model.hidden_size=4",
        "model.layers=1",
        "epochs=1",
        "seeds=1",
        f"grid.lr=[{lrs}]",
        "grid.clip=[null]",
        "grid.batch_size=[256]",
        f"workers={workers}",
        f"results_dir={folder}",
        "study.name=start",
    ]
    env = dict(os.environ, LRSWEEP_WORKER_START=start)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"the sweep failed ({p.returncode}):\n{p.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="workers=2, 1 round")
    a = ap.parse_args()
    if a.smoke:
        a.workers, a.rounds = 2, 1
    if not sys.platform.startswith("linux"):
        print("workers are forked on Linux only; elsewhere both ways start a fresh interpreter")
    results: dict[str, list[tuple[float, float]]] = {"exec": [], "fork": []}
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        for r in range(a.rounds):
            for start in ("exec", "fork") if r % 2 == 0 else ("fork", "exec"):
                results[start].append(one_sweep(Path(tmp) / f"{start}-{r}", a.workers, start))
    print(
        f"a sweep of {a.workers} settings x 1 seed x 1 epoch with workers={a.workers}, {a.rounds} round(s), "
        f"on {os.cpu_count()} cores (medians)"
    )
    med = {
        s: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
        for s, v in results.items()
    }
    for start, label in (
        ("exec", "a fresh interpreter per worker (LRSWEEP_WORKER_START=exec)"),
        ("fork", "forked from the launcher (the default on Linux)"),
    ):
        wall, cpu = med[start]
        print(f"  {label:60s} wall {wall:6.2f} s   CPU {cpu:6.2f} s")
    (we, ce), (wf, cf) = med["exec"], med["fork"]
    print(
        f"  forked / fresh: wall x{wf / we:.2f}, CPU x{cf / ce:.2f} "
        f"({(ce - cf) / a.workers:.2f} CPU s saved per worker)"
    )


if __name__ == "__main__":
    main()
