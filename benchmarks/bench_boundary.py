"""The stability boundary, measured three ways on the same task, in one invocation:

    python benchmarks/bench_boundary.py                 # digits and the adding problem
    python benchmarks/bench_boundary.py --task digits
    python benchmarks/bench_boundary.py --smoke          # toy sizes, no checks: that it runs (CI)

(a) reference: a dense grid, 12 learning rates spanning two decades across the edge x 10 seeds
    (120 runs, one slice), fitted for lr_at_10 and lr_at_50 with their 95% intervals;
(b) `sweep refine` from a coarse start (3 learning rates x 3 seeds), with refine.max_runs at 40%
    of the reference's runs;
(c) `sweep find`: the range test's proposed grid.

It checks that refine's lr_at_10 and lr_at_50 lie within the reference's 95% intervals (or within
a factor of 1.5 of its estimates), that refine used at most 40% of the reference's runs, and that
find's proposed span contains the reference's lr_at_50; it prints runs and wall time of each.
Every training runs through the real CLI (`python -m sweep ...`) with its default workers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent

TASKS = {
    # The default model (2-layer LSTM, SGD + momentum) on digits, 20 epochs, without clipping.
    "digits": {
        "overrides": ["task=digits", "epochs=20", "grid.clip=[null]", "grid.batch_size=[32]"],
        "reference": list(np.geomspace(0.1, 10, 12)),
        "coarse": [0.1, 1.0, 10.0],
    },
    # The adding problem (length 20), a 1-layer LSTM, SGD + momentum, 10 epochs, without clipping.
    "adding": {
        "overrides": [
            "task=adding",
            "task.length=20",
            "task.n_train=2000",
            "task.n_val=500",
            "model.layers=1",
            "model.hidden_size=32",
            "epochs=10",
            "grid.clip=[null]",
            "grid.batch_size=[32]",
        ],
        "reference": list(np.geomspace(0.03, 3, 12)),
        "coarse": [0.03, 0.3, 3.0],
    },
}


def lr_list(values: list[float]) -> str:
    return "[" + ",".join(f"{v:.4g}" for v in values) + "]"


def sweep(command: str, args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "sweep", command, *args], cwd=ROOT, capture_output=True, text=True
    )
    if p.returncode != 0:
        raise SystemExit(f"sweep {command} failed:\n{p.stderr[-3000:]}")
    return time.perf_counter() - start, p


def verdict(folder: Path) -> dict:
    v = pd.read_csv(folder / "verdicts.csv").iloc[0].to_dict()
    runs = pd.read_csv(folder / "runs.csv")
    return {
        **{k: (None if pd.isna(x) else x) for k, x in v.items() if k.startswith("lr_at_")},
        "runs": len(runs),
    }


def within(got: dict, ref: dict, q: int) -> bool:
    """refine's lr_at_q inside the reference's 95% interval, or within 1.5x of its estimate."""
    value, est = got.get(f"lr_at_{q}"), ref.get(f"lr_at_{q}")
    if value is None or est is None:
        return False
    lo, hi = ref.get(f"lr_at_{q}_lo"), ref.get(f"lr_at_{q}_hi")
    inside = (lo is None or lo <= value) and (hi is None or value <= hi)
    return inside or 1 / 1.5 <= value / est <= 1.5


SMOKE = ["epochs=2", "model.hidden_size=8", "model.layers=1"]  # toy sizes: that the script runs


def bench(name: str, tmp: Path, smoke: bool = False) -> dict:
    t = TASKS[name]
    common = t["overrides"] + [f"results_dir={tmp / name}"] + (SMOKE if smoke else [])
    reference = t["reference"][::4] if smoke else t["reference"]
    ref_s, _ = sweep(
        "run",
        common
        + [f"grid.lr={lr_list(reference)}", f"seeds={2 if smoke else 10}", "study.name=reference"],
    )
    ref = verdict(tmp / name / "reference")
    budget = int(0.4 * ref["runs"])
    ref_runs = ref["runs"]
    refine_s, out = sweep(
        "refine",
        common
        + [
            f"grid.lr={lr_list(t['coarse'])}",
            f"seeds={2 if smoke else 3}",
            "study.name=refine",
            f"refine.max_runs={max(budget, 7 if smoke else 0)}",
            *(["refine.max_rounds=1"] if smoke else []),
        ],
    )
    got = verdict(tmp / name / "refine")
    find_s, found = sweep("find", common + ["study.name=find"])
    line = next(x for x in found.stdout.splitlines() if x.startswith("proposed grid"))
    proposed = [float(v) for v in line.split("'[", 1)[1].split("]'", 1)[0].split(",")]
    return {
        "task": name,
        "reference": {**ref, "seconds": round(ref_s, 1)},
        "refine": {
            **got,
            "seconds": round(refine_s, 1),
            "budget": budget,
            "rounds": sum(1 for x in out.stdout.splitlines() if x.startswith("refine round")),
        },
        "find": {"proposed": proposed, "seconds": round(find_s, 1)},
        "checks": {
            "lr_at_10 agrees": within(got, ref, 10),
            "lr_at_50 agrees": within(got, ref, 50),
            "refine used <= 40% of the runs": got["runs"] <= 0.4 * ref_runs,
            "find's span holds the reference lr_at_50": ref.get("lr_at_50") is not None
            and min(proposed) <= ref["lr_at_50"] <= max(proposed),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--task", choices=[*TASKS, "all"], default="all")
    ap.add_argument(
        "--smoke", action="store_true", help="digits at toy sizes, no checks: that the script runs"
    )
    args = ap.parse_args()
    names = ["digits"] if args.smoke else list(TASKS) if args.task == "all" else [args.task]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            r = bench(name, Path(tmp), args.smoke)
            results.append(r)
            ref, got = r["reference"], r["refine"]
            print(
                f"{name}: reference {ref['runs']} runs {ref['seconds']} s: lr_at_10 {ref['lr_at_10']} "
                f"[{ref['lr_at_10_lo']}, {ref['lr_at_10_hi']}], lr_at_50 {ref['lr_at_50']} "
                f"[{ref['lr_at_50_lo']}, {ref['lr_at_50_hi']}]",
                flush=True,
            )
            print(
                f"{name}: refine {got['runs']} runs ({got['rounds']} rounds, budget {got['budget']}) "
                f"{got['seconds']} s: lr_at_10 {got['lr_at_10']} [{got['lr_at_10_lo']}, {got['lr_at_10_hi']}], "
                f"lr_at_50 {got['lr_at_50']} [{got['lr_at_50_lo']}, {got['lr_at_50_hi']}]",
                flush=True,
            )
            print(
                f"{name}: find {r['find']['seconds']} s: proposed {r['find']['proposed']}",
                flush=True,
            )
            print(f"{name}: checks {r['checks']}", flush=True)
    print(json.dumps(results, indent=1, default=str))
    if not args.smoke and not all(all(r["checks"].values()) for r in results):
        raise SystemExit("a check failed")


if __name__ == "__main__":
    main()
