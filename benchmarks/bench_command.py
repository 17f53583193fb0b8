"""What `trainer=command` costs per run, against running the same script by hand, in one invocation.

    python benchmarks/bench_command.py            # 12 runs of a 1-second script, each way
    python benchmarks/bench_command.py --smoke    # 4 short runs: that it runs (CI)

(a) by hand: the script (tests/data/fake_train.py: 5 epochs of 0.2 s, no framework) run once per
    (setting, seed), one after another, as a shell loop would;
(b) lrsweep: `sweep run trainer=command` over the same (setting, seed)s with one worker, timed end
    to end: start-up, study, one supervised process group per run, the metrics file read once a
    second, records stored, and the report written at the end.

Prints both times, the overhead per run ((b) - (a)) / runs, split into the sweep's fixed cost
(start-up and report, measured as the same sweep with nothing left to run) and the per-run rest.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "data" / "fake_train.py"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--smoke", action="store_true", help="4 runs of 2 short epochs")
    args = ap.parse_args()
    lrs, seeds, epochs, sleep = (
        ([0.1, 0.3], 2, 2, 0.05) if args.smoke else ([0.01, 0.03, 0.1, 0.3, 0.5, 0.7], 2, 5, 0.2)
    )
    runs = len(lrs) * seeds
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for lr in lrs:
            for seed in range(seeds):
                subprocess.run(
                    [
                        sys.executable,
                        str(SCRIPT),
                        "--lr",
                        str(lr),
                        "--seed",
                        str(seed),
                        "--epochs",
                        str(epochs),
                        "--sleep",
                        str(sleep),
                        "--log",
                        f"{tmp}/hand.csv",
                    ],
                    check=True,
                )
        by_hand = time.perf_counter() - start
        command = (
            f"{sys.executable} {SCRIPT} --lr {{lr}} --clip {{clip}} --seed {{seed}} --epochs {{epochs}} "
            f"--sleep {sleep} --log {{metrics}}"
        )
        sweep = [
            sys.executable,
            "-m",
            "sweep",
            "run",
            "trainer=command",
            f"trainer.command={command}",
            "trainer.n_val=200",
            "trainer.chance=0.25",
            f"grid.lr=[{','.join(map(str, lrs))}]",
            "grid.clip=[null]",
            f"seeds={seeds}",
            f"epochs={epochs}",
            "workers=1",
            f"results_dir={tmp}/results",
        ]
        start = time.perf_counter()
        p = subprocess.run(sweep, cwd=ROOT, capture_output=True, text=True)
        swept = time.perf_counter() - start
        if p.returncode != 0:
            raise SystemExit(p.stderr[-3000:])
        start = time.perf_counter()
        subprocess.run(
            sweep, cwd=ROOT, capture_output=True, text=True, check=True
        )  # nothing left: the fixed cost
        fixed = time.perf_counter() - start
    per_run = (swept - by_hand) / runs
    print(
        f"{runs} runs x {epochs} epochs of {sleep} s: by hand {by_hand:.1f} s, sweep run trainer=command "
        f"{swept:.1f} s ({swept / by_hand:.2f}x)"
    )
    print(
        f"overhead per run {per_run:.2f} s, of which the sweep's fixed cost (start-up, storage, report: "
        f"{fixed:.1f} s once) is {fixed / runs:.2f} s and the per-run rest {per_run - fixed / runs:.2f} s"
    )


if __name__ == "__main__":
    main()
