"""Calls from the loss alone (issue 27): what noise alone makes of a loss curve, and the power
against a jump, by seeded simulation of `detect_loss_run`.

    python benchmarks/bench_loss_detection.py              # 2,000 curves per cell: ~15 min on 2 cores
    python benchmarks/bench_loss_detection.py --runs 300   # a quicker, noisier look
    python benchmarks/bench_loss_detection.py --smoke      # 10 curves per cell: that it runs (CI)
    python benchmarks/bench_loss_detection.py --short      # only the short curves' tables

Noise is simulated on the log of the loss: normal, or Student-t with 3 degrees of freedom scaled
to the same robust sd (1.4826 x median |value|), whose outlying epochs are common.

Noise alone (a training that learns nothing, around the loss of knowing nothing, 1.0): flat;
a fast fall (an untrained first epoch at 1.6, the second at 1.15, then the null level); a slow
drift up (+8% over the run: memorising noise); a wander between 1.0 and 1.05. Per-epoch noise
0.5%, 2% and 10%; 10, 30 and 100 epochs; the loss of knowing nothing given (chance_loss=1.0) or
not (the reference is then the first logged loss). The share called learned, and collapsed.

Power: the loss falls from 1.0 to 0.4 in 5 epochs, holds 15, then its last L epochs sit J noise
sds (5% per epoch) above the threshold best + drop x (reference - best) = 0.7, on the log scale.
Short curves (6 to 12 epochs): the noise-alone scenarios at 6, 8 and 12 epochs; and a run that
falls from the loss of knowing nothing (1.0) to 0.55 in one epoch (45%, as the Lightning
example's val loss did), holds 2 epochs, rises over 1 to 4 epochs (linearly, the last of them at
the final level) and stays there to the end: J noise sds above the threshold (0.775 with
chance_loss given), or at 2.4 x its best (the example's), noise 5% per epoch.
tests/test_loss_detection.py holds the claims at fewer curves.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sweep.analysis.loss_detection import detect_loss_run  # noqa: E402
from sweep.config import DetectConfig  # noqa: E402

D = DetectConfig()
T3_SCALE = 1.0 / (1.4826 * 0.7649)
SCENARIOS = ("flat", "fast fall", "drift up", "wander")


def noise(rng, kind: str, sigma: float, shape) -> np.ndarray:
    if kind == "normal":
        return sigma * rng.standard_normal(shape)
    return sigma * T3_SCALE * rng.standard_t(3, shape)


def null_levels(scenario: str, epochs: int) -> np.ndarray:
    t = np.arange(epochs)
    if scenario == "flat":
        return np.zeros(epochs)
    if scenario == "fast fall":
        return np.r_[np.log([1.6, 1.15]), np.zeros(epochs - 2)]
    if scenario == "drift up":
        return np.log1p(0.08 * t / epochs)
    return np.log1p(0.025 * (1 + np.sin(2 * np.pi * t / max(epochs / 2, 2))))


def pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.1 or x == 0 else f"{100 * x:.2f}%"


def null_table(runs: int, seed: int, lengths: tuple[int, ...] = (10, 30, 100)) -> None:
    rng = np.random.default_rng(seed)
    print(
        f"\n#### Noise alone: called learned / collapsed, worst of 3 noise levels ({runs} curves "
        "per cell; chance_loss given | reference = first logged loss)\n"
    )
    print("| scenario | noise | " + " | ".join(f"{e} epochs" for e in lengths) + " |")
    print("|---" * (2 + len(lengths)) + "|")
    totals = np.zeros(2)
    count = 0
    for scenario in SCENARIOS:
        for kind in ("normal", "t3"):
            cells = []
            for epochs in lengths:
                worst = np.zeros((2, 2))  # [chance given, first loss] x [learned, collapsed]
                for sigma in (0.005, 0.02, 0.1):
                    curves = np.exp(
                        null_levels(scenario, epochs) + noise(rng, kind, sigma, (runs, epochs))
                    )
                    for j, chance_loss in enumerate((1.0, None)):
                        v = [detect_loss_run(c, detect=D, chance_loss=chance_loss) for c in curves]
                        rates = [
                            np.mean([not r.never_learned for r in v]),
                            np.mean([r.collapsed for r in v]),
                        ]
                        worst[j] = np.maximum(worst[j], rates)
                        totals += [0, rates[1]]
                        count += 1
                cells.append(
                    f"{pct(worst[0, 0])} / {pct(worst[0, 1])} \\| {pct(worst[1, 0])} / {pct(worst[1, 1])}"
                )
            print(f"| {scenario} | {kind} | " + " | ".join(cells) + " |")
    print(f"\nPooled share collapsed over every cell: {pct(totals[1] / count)} ({count} cells).")


def power_table(runs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = (0.5, 1, 2, 3, 5, 10)
    print(f"\n#### Called collapsed against the level after the jump ({runs} curves per cell)\n")
    print(
        "| noise | epochs after the jump | "
        + " | ".join(f"{j:g} sds past the threshold" for j in sizes)
        + " |"
    )
    print("|---" * (len(sizes) + 2) + "|")
    sigma = 0.05
    for kind in ("normal", "t3"):
        for stretch in (3, 6, 12):
            cells = []
            for j in sizes:
                level = np.r_[np.log(np.geomspace(1.0, 0.4, 6)[1:]), np.full(15, np.log(0.4))]
                level = np.r_[level, np.full(stretch, np.log(0.7) + j * sigma)]
                curves = np.exp(level + noise(rng, kind, sigma, (runs, level.size)))
                rate = np.mean(
                    [detect_loss_run(c, detect=D, chance_loss=1.0).collapsed for c in curves]
                )
                cells.append(pct(float(rate)))
            print(f"| {kind} | {stretch} | " + " | ".join(cells) + " |")


SHORT_BEST = 0.55


def short_levels(epochs: int, rise: int, final: float) -> np.ndarray | None:
    """log(loss) of a short run: 1.0, then 0.55 for 2 epochs, a linear rise reaching `final` at
    its `rise`-th epoch, then `final` to the end (None: fewer than `patience` epochs there)."""
    start = [1.0, SHORT_BEST, SHORT_BEST]
    rising = list(np.geomspace(SHORT_BEST, final, rise + 1)[1:-1])
    stay = epochs - len(start) - len(rising)
    return None if stay < D.patience else np.log(start + rising + [final] * stay)


def short_power_table(runs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sigma = 0.05
    threshold = SHORT_BEST + D.drop * (1.0 - SHORT_BEST)
    finals = [(f"{j:g} sds past the threshold", threshold * np.exp(j * sigma)) for j in (3, 5)]
    finals.append(("2.4 x best", 2.4 * SHORT_BEST))
    print(
        f"\n#### Short curves: called collapsed against the level after the rise (noise 5%, "
        f"chance_loss given; {runs} curves per cell)\n"
    )
    print(
        "| noise | epochs | rise over | "
        + " | ".join(name for name, _ in finals)
        + " | learned, 2.4 x best |"
    )
    print("|---" * (4 + len(finals)) + "|")
    for kind in ("normal", "t3"):
        for epochs in (6, 8, 10, 12):
            for rise in (1, 2, 3, 4):
                if short_levels(epochs, rise, 1.0) is None:
                    continue
                cells = []
                for _, final in finals:
                    level = short_levels(epochs, rise, final)
                    curves = np.exp(level + noise(rng, kind, sigma, (runs, epochs)))
                    v = [detect_loss_run(c, detect=D, chance_loss=1.0) for c in curves]
                    cells.append(pct(float(np.mean([r.collapsed for r in v]))))
                learned = np.mean([not r.never_learned for r in v])  # (the last: 2.4 x best)
                print(
                    f"| {kind} | {epochs} | {rise} | "
                    + " | ".join(cells)
                    + f" | {pct(float(learned))} |"
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=2000, help="simulated curves per cell")
    ap.add_argument("--smoke", action="store_true", help="10 curves per cell: that it runs")
    ap.add_argument("--short", action="store_true", help="only the short curves' tables")
    args = ap.parse_args()
    runs = 10 if args.smoke else args.runs
    t0 = time.perf_counter()
    if not args.short:
        power_table(runs, seed=2705)
        null_table(runs, seed=2706)
    short_power_table(runs, seed=2709)
    null_table(runs, seed=2710, lengths=(6, 8, 12))
    print(f"\n({time.perf_counter() - t0:.0f} s; seeds 2705-2710; detect defaults {D})")


if __name__ == "__main__":
    main()
