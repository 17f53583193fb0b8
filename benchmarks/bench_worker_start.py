"""What starting the workers costs: CPU workers forked from the launcher vs a fresh interpreter each.

    python benchmarks/bench_worker_start.py               # workers=4, 3 rounds
    python benchmarks/bench_worker_start.py --workers 8   # more workers
    python benchmarks/bench_worker_start.py --smoke       # workers=2, 1 round: that it runs (CI)

Each round runs the same tiny sweep (one epoch of a 4-unit LSTM per setting, as many settings as
workers, so every worker trains) with `python -m sweep run` three ways, in rotating order: with
`LRSWEEP_WORKER_START=exec` (the baseline: every worker a fresh interpreter that imports torch,
optuna and lrsweep), forked (the default on Linux), and forked with the launcher's import of the
storage's modules turned off in that process (each worker then imports SQLAlchemy's ORM, Alembic
and Optuna's tables itself, as before 2026-12-06). It prints the median wall time and the median
CPU time of the whole process tree (the launcher, its workers) of each, and the ratios. Training
is the same small amount in all, so the differences are what the start of the workers costs.
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


# `python -m sweep` with the launcher's import of the storage's modules before it forks turned off.
WITHOUT_STORAGE_IMPORT = (
    "import sys; import sweep.launch.worker as w; w.import_backend = lambda url: None; "
    "from sweep.cli import main; main(sys.argv[1:])"
)


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
    if start == "fork-bare":  # the launcher leaves the storage's modules to each worker
        args[1:3] = ["-c", WITHOUT_STORAGE_IMPORT]
    env = dict(os.environ, LRSWEEP_WORKER_START="exec" if start == "exec" else "fork")
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
    ways = ("exec", "fork", "fork-bare")
    results: dict[str, list[tuple[float, float]]] = {w: [] for w in ways}
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        for r in range(a.rounds):
            for start in ways[r % 3 :] + ways[: r % 3]:
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
        ("fork-bare", "forked, each worker importing the storage's modules"),
    ):
        wall, cpu = med[start]
        print(f"  {label:60s} wall {wall:6.2f} s   CPU {cpu:6.2f} s")
    (we, ce), (wf, cf), (wb, cb) = med["exec"], med["fork"], med["fork-bare"]
    print(
        f"  forked / fresh: wall x{wf / we:.2f}, CPU x{cf / ce:.2f} "
        f"({(ce - cf) / a.workers:.2f} CPU s saved per worker)"
    )
    print(
        f"  forked / forked with each worker importing the storage's modules: wall "
        f"x{wf / wb:.2f}, CPU x{cf / cb:.2f} ({(cb - cf) / a.workers:.2f} CPU s saved per worker)"
    )


if __name__ == "__main__":
    main()
