"""Which lr, from epoch k on, is safe? Answered from scratch and from a checkpoint (issue 28).

    python benchmarks/bench_checkpoint_start.py            # the table of benchmarks/README.md
    python benchmarks/bench_checkpoint_start.py --smoke    # toy sizes: that it runs (CI)

A training that collapses late: lrsweep's LSTM (16 units, 1 layer) on the digits task, SGD with
momentum, at lr 0.05 for its first k = 35 epochs, then at the lr under test (`schedule=step`:
`before_lr` 0.05 for k x 22 steps, then the setting's lr). Every seed learns for 35 epochs (val
accuracy about 0.9-0.96); the larger lrs then lose it. The question is the user's of issue 28:
from epoch k on, which lr is safe?

- from scratch: every (lr, seed) trains epochs 1..k+m (k + m = 50): the epochs to reach the
  raise, and m after it;
- from the checkpoint: one run of the original (lr 0.05, seed 0) keeps its state at epoch k - 5
  (`checkpoint.keep_epochs`), and every (lr, seed) starts from it (`start.from_run`), trains the
  5 epochs up to the raise at 0.05 and the same m after it: epochs k-4..k+m.

Both are real `sweep run`s (workers=2, threads=1, the collapse signals off in both), timed end to
end. The script prints the cost of each (runs x epochs, wall time) and, per lr, the collapse rate
of each with its Wilson 95% interval, and whether the two agree: the checkpoint's rate within
the from-scratch interval (the reference), both within each other's, and Fisher's exact p of the
two counts. The seeds of the two answers differ in kind: from scratch they vary the initial weights
and the data order from epoch 1; from the checkpoint only the data order from epoch k - 5.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scipy.stats import fisher_exact  # noqa: E402

from sweep.analysis.stats import wilson_interval  # noqa: E402

STEPS = 22  # optimizer steps per epoch: ceil(1347 training digits / batch 64)


def sweep(results: Path, study: str, *overrides: str) -> float:
    """One `sweep run`, timed end to end (start-up, training, report)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweep",
            "run",
            *overrides,
            f"results_dir={results}",
            f"study.name={study}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        sys.exit(f"sweep run {study} failed:\n{p.stderr[-3000:]}")
    return time.perf_counter() - started


def rates(results: Path, study: str) -> pd.DataFrame:
    runs = pd.read_csv(results / study / "runs.csv")
    out = runs.groupby("lr").agg(
        k=("collapsed", "sum"), n=("collapsed", "size"), epochs=("epochs_run", "sum")
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="toy sizes, to show that it runs")
    ap.add_argument("--seeds", type=int, default=5)
    a = ap.parse_args()
    if a.smoke:
        k, tail, lrs, seeds, hidden = 6, 3, [0.05, 4.0], 2, 8
    else:
        k, tail, lrs, seeds, hidden = 35, 15, [0.05, 0.1, 0.2, 0.5, 1.0, 2.0], a.seeds, 16
    base = [
        "task=digits",
        f"model.hidden_size={hidden}",
        "model.layers=1",
        "optimizer=sgd",
        "grid.clip=[null]",
        "grid.batch_size=[64]",
        "signals.enabled=false",
        "workers=2",
        "threads=1",
        "schedule=step",
        "schedule.before_lr=0.05",
    ]
    grid = f"grid.lr=[{','.join(map(str, lrs))}]"
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp)
        scratch_s = sweep(
            results,
            "scratch",
            *base,
            grid,
            f"seeds={seeds}",
            f"epochs={k + tail}",
            f"schedule.at_step={k * STEPS}",
        )
        original_s = sweep(
            results,
            "original",
            *base,
            "grid.lr=[0.05]",
            "seeds=1",
            f"epochs={k - 5}",
            "schedule.at_step=0",
            f"checkpoint.keep_epochs=[{k - 5}]",
        )
        start_s = sweep(
            results,
            "from_checkpoint",
            *base,
            grid,
            f"seeds={seeds}",
            f"epochs={5 + tail}",
            f"schedule.at_step={5 * STEPS}",
            f"start.from_run=original/lr0.05-clipnone-bs64/seed-0@{k - 5}",
        )
        scratch, start = rates(results, "scratch"), rates(results, "from_checkpoint")
        verdict = (results / "from_checkpoint" / "verdict.txt").read_text().splitlines()[1:3]
    scratch_epochs = int(scratch["epochs"].sum())
    start_epochs = int(start["epochs"].sum()) + (k - 5)  # the original run's epochs too
    print(
        f"question: from epoch {k} on, which lr is safe? (lr 0.05 before; {tail} epochs after the raise)"
    )
    print("| answer | runs x epochs | wall time | ratio (scratch / checkpoint) |")
    print("| --- | --- | --- | --- |")
    print(f"| from scratch (epochs 1-{k + tail}) | {scratch_epochs} | {scratch_s:.0f} s | |")
    print(
        f"| from the checkpoint at epoch {k - 5} (epochs {k - 4}-{k + tail}; the original's {k - 5} "
        f"epochs included) | {start_epochs} | {original_s + start_s:.0f} s ({original_s:.0f} + {start_s:.0f}) "
        f"| {scratch_epochs / start_epochs:.2f}x runs x epochs, {scratch_s / (original_s + start_s):.2f}x wall |"
    )
    print()
    print(
        "| lr | from scratch: collapsed (95% CI) | from the checkpoint: collapsed (95% CI) "
        "| checkpoint's rate in scratch's CI | both in each other's CI | Fisher exact p |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    within_all = True
    for lr in lrs:
        (k1, n1), (k2, n2) = (
            tuple(int(v) for v in t.loc[lr, ["k", "n"]]) for t in (scratch, start)
        )
        _, lo1, hi1 = wilson_interval(k1, n1)
        _, lo2, hi2 = wilson_interval(k2, n2)
        within = lo1 <= k2 / n2 <= hi1  # the answer from scratch is the reference
        both = within and lo2 <= k1 / n1 <= hi2
        within_all &= within
        p = fisher_exact([[k1, n1 - k1], [k2, n2 - k2]])[1]
        print(
            f"| {lr:g} | {k1}/{n1} ({lo1:.2f}-{hi1:.2f}) | {k2}/{n2} ({lo2:.2f}-{hi2:.2f}) | "
            f"{'yes' if within else 'NO'} | {'yes' if both else 'no'} | {p:.2f} |"
        )
    print()
    print("verdict from the checkpoint:", *verdict, sep="\n  ")
    verdict_line = "yes" if within_all else "no"
    print(f"\nthe checkpoint's rate within the from-scratch interval at every lr: {verdict_line}")


if __name__ == "__main__":
    main()
