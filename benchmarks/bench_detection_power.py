"""The accuracy call's power and false alarms, before and after issue 27 (seeded simulation).

    python benchmarks/bench_detection_power.py              # 1,000 runs per cell: ~6 min on 2 cores
    python benchmarks/bench_detection_power.py --runs 200   # a quicker, noisier look
    python benchmarks/bench_detection_power.py --smoke      # 20 runs per cell: that it runs (CI)
    python benchmarks/bench_detection_power.py --short      # only the short runs' tables (~5 min)
    python benchmarks/bench_detection_power.py --speed      # only what one call costs (~1 min)

A simulated run learns from chance (0.1) to 0.8 over 5 epochs, holds 5 epochs, then sits at a
true level for its last 12 epochs. The threshold (half the gain lost) is near 0.45. Each epoch's
true accuracy wanders around its level with sd 0.06 (the model's own wander: in the last 12
epochs, as issue 27 measured it, or in every epoch), and each epoch scores a fresh
Binomial(n_val, p) count. "Shared items" scores every epoch on the same n_val items (Gaussian
copula, rho 0.9: item i is right at epoch t when sqrt(rho) g_i + sqrt(1 - rho) h_it <
Phi^-1(p_t)). Every run goes through the product's `detect_run` ("new") and through the rule it
replaced ("old": the final stretch is every epoch below the threshold, at least `patience` long,
confirmed by a Wilson bound with one epoch's noise), with the same `detect` defaults.

Tables (markdown, for docs/statistics.md): the share called collapsed against the true final
level and n_val; false alarms: a run that lost 29% of its gain, random labels (every epoch a
Binomial(n_val, chance) proportion), and runs that learned a little and stay flat while they
wander (true level 0.25-0.6 at chance 0.2, wander sd 0.03-0.1), the worst cell and the mean.
Short runs (6 to 12 epochs, as a first sweep of a new model has): the run is at the midpoint
for one epoch, at its peak (0.7) for two, falls over 1 to 4 epochs (linearly, the last of them at
the final level) and stays there to the end, at least `patience` epochs; wander sd 0.06 in every
epoch. Its false alarms: the same shape losing 29% of its gain or none, random labels, and flat
runs that learned a little and wander, at 6 to 12 epochs.
tests/test_detection_power.py holds the claims at fewer runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import ndtri

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sweep.analysis.detection import best_accuracy, detect_run, learned_floor  # noqa: E402
from sweep.analysis.noise import wilson_upper  # noqa: E402
from sweep.config import DetectConfig  # noqa: E402

D = DetectConfig()
CHANCE = 0.1
WANDER = 0.06
LEVELS = (0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.55)
SIZES = (50, 100, 360, 1000)
LOST_29 = 0.8 - 0.29 * (0.8 - CHANCE)


def old_rule_collapsed(acc: np.ndarray, chance: float, n_val: int) -> bool:
    """The diverged call before issue 27 (flat validation loss: no second witness)."""
    best, best_epoch = best_accuracy(acc, chance)
    if best < learned_floor(chance, int(np.isfinite(acc).sum()), n_val, D) - 1e-9:
        return False
    threshold = chance + (1.0 - D.drop) * (best - chance)
    above = np.isfinite(acc) & (acc >= threshold)
    if above[-1]:
        return False
    hits = np.flatnonzero(above)
    start = int(hits[-1]) + 2 if hits.size else 1
    if acc.size - start + 1 < D.patience:
        return False
    stretch = acc[start - 1 :]
    mean = float(np.where(np.isfinite(stretch), stretch, 0.0).mean())
    return wilson_upper(mean * n_val, n_val, D.alpha) < threshold


def new_rule_collapsed(acc: np.ndarray, chance: float, n_val: int) -> bool:
    epochs = acc.size
    return detect_run(
        acc, np.ones(epochs), np.full(epochs, 0.3), None, chance, D, n_val=n_val
    ).collapsed


def levels(final: float) -> np.ndarray:
    return np.concatenate([np.linspace(CHANCE, 0.8, 6)[1:], np.full(5, 0.8), np.full(12, final)])


def simulate(rng, n_val: int, level: np.ndarray, runs: int, wander_from: int) -> np.ndarray:
    noise = WANDER * rng.standard_normal((runs, level.size))
    noise[:, :wander_from] = 0.0
    return rng.binomial(n_val, np.clip(level + noise, 0.0, 1.0)) / n_val


def simulate_shared(rng, n_val: int, level: np.ndarray, runs: int, rho: float = 0.9) -> np.ndarray:
    out = np.empty((runs, level.size))
    for r in range(runs):  # (runs x epochs x items would not fit at n_val = 1000)
        p = np.clip(level + WANDER * rng.standard_normal(level.size), 1e-6, 1 - 1e-6)
        z = np.sqrt(rho) * rng.standard_normal(n_val) + np.sqrt(1 - rho) * rng.standard_normal(
            (level.size, n_val)
        )
        out[r] = (z < ndtri(p)[:, None]).mean(axis=1)
    return out


def rates(acc: np.ndarray, chance: float, n_val: int) -> tuple[float, float]:
    old = np.mean([old_rule_collapsed(a, chance, n_val) for a in acc])
    new = np.mean([new_rule_collapsed(a, chance, n_val) for a in acc])
    return float(old), float(new)


def pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.1 or x == 0 else f"{100 * x:.1f}%"


def power_table(runs: int, where: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    print(f"\n#### Called collapsed, wander in {where} (old -> new, {runs} runs per cell)\n")
    print(
        "| true final level (share of gain lost) | "
        + " | ".join(f"n_val {n}" for n in SIZES)
        + " |"
    )
    print("|---" * (len(SIZES) + 1) + "|")
    for final in LEVELS + (round(LOST_29, 3),):
        lost = (0.8 - final) / (0.8 - CHANCE)
        cells = []
        for n in SIZES:
            level = levels(final)
            start = level.size - 12 if where == "the last 12 epochs" else 0
            old, new = rates(simulate(rng, n, level, runs, start), CHANCE, n)
            cells.append(f"{pct(old)} -> **{pct(new)}**")
        print(f"| {final:g} ({lost:.0%}) | " + " | ".join(cells) + " |")


def shared_table(runs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    print(
        f"\n#### Shared items (rho 0.9), wander in every epoch (old -> new, {runs} runs per cell)\n"
    )
    print("| true final level | " + " | ".join(f"n_val {n}" for n in SIZES) + " |")
    print("|---" * (len(SIZES) + 1) + "|")
    for final in (0.25, 0.35, 0.45, round(LOST_29, 3)):
        cells = [
            "{} -> **{}**".format(
                *map(pct, rates(simulate_shared(rng, n, levels(final), runs), CHANCE, n))
            )
            for n in SIZES
        ]
        print(f"| {final:g} | " + " | ".join(cells) + " |")


def null_tables(runs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes, lengths = (20, 60, 100, 360, 1000), (10, 30, 100)
    print(f"\n#### Random labels: runs called collapsed (old -> new, {runs} runs per cell)\n")
    print("| epochs | " + " | ".join(f"n_val {n}" for n in sizes) + " |")
    print("|---" * (len(sizes) + 1) + "|")
    for epochs in lengths:
        cells = []
        for n in sizes:
            acc = rng.binomial(n, CHANCE, (runs, epochs)) / n
            cells.append("{} -> **{}**".format(*map(pct, rates(acc, CHANCE, n))))
        print(f"| {epochs} | " + " | ".join(cells) + " |")
    print(
        f"\n#### Learned a little, flat, wandering: called collapsed, worst cell / mean of 12 cells "
        f"(true level 0.25, 0.3, 0.4, 0.6 at chance 0.2 x wander sd 0.03, 0.06, 0.1; old -> new, "
        f"{runs} runs per cell)\n"
    )
    print("| epochs | " + " | ".join(f"n_val {n}" for n in (60, 100, 1000)) + " |")
    print("|---" * 4 + "|")
    for epochs in lengths:
        cells = []
        for n in (60, 100, 1000):
            worst, total = [0.0, 0.0], [0.0, 0.0]
            for p0 in (0.25, 0.3, 0.4, 0.6):
                for w in (0.03, 0.06, 0.1):
                    p = np.clip(p0 + w * rng.standard_normal((runs, epochs)), 0.0, 1.0)
                    r = rates(rng.binomial(n, p) / n, 0.2, n)
                    worst = [max(a, b) for a, b in zip(worst, r)]
                    total = [a + b / 12 for a, b in zip(total, r)]
            cells.append(
                f"{pct(worst[0])} / {pct(total[0])} -> **{pct(worst[1])} / {pct(total[1])}**"
            )
        print(f"| {epochs} | " + " | ".join(cells) + " |")


SHORT_EPOCHS = (6, 8, 10, 12)
SHORT_FALLS = (1, 2, 3, 4)
SHORT_PEAK = 0.7


def short_levels(epochs: int, fall: int, final: float) -> np.ndarray | None:
    """True accuracy of a short run: the midpoint for one epoch, the peak for two, a linear fall
    reaching `final` at its `fall`-th epoch, then `final` to the end (None: too short a stretch)."""
    start = [CHANCE + 0.5 * (SHORT_PEAK - CHANCE), SHORT_PEAK, SHORT_PEAK]
    falling = list(np.linspace(SHORT_PEAK, final, fall + 1)[1:-1])
    stay = epochs - len(start) - len(falling)
    return None if stay < D.patience else np.array(start + falling + [final] * stay)


def short_power_table(runs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    finals, sizes = (0.1, 0.25), (100, 360, 1000)
    print(f"\n#### Short runs, called collapsed (old -> new, wander 0.06, {runs} runs per cell)\n")
    print(
        "| epochs | fall over | "
        + " | ".join(f"{f:g} at n_val {n}" for f in finals for n in sizes)
        + " |"
    )
    print("|---" * (2 + len(finals) * len(sizes)) + "|")
    for epochs in SHORT_EPOCHS:
        for fall in SHORT_FALLS:
            if short_levels(epochs, fall, 0.1) is None:
                continue
            cells = []
            for final in finals:
                for n in sizes:
                    acc = simulate(rng, n, short_levels(epochs, fall, final), runs, 0)
                    cells.append("{} -> **{}**".format(*map(pct, rates(acc, CHANCE, n))))
            print(f"| {epochs} | {fall} | " + " | ".join(cells) + " |")


def short_null_tables(runs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = (50, 100, 360, 1000)
    print(
        "\n#### Short runs that lost 29% of their gain / none of it: called collapsed, worst of "
        f"the falls over 1-4 epochs (old -> new, wander 0.06, {runs} runs per cell)\n"
    )
    print("| epochs | " + " | ".join(f"n_val {n}" for n in sizes) + " |")
    print("|---" * (len(sizes) + 1) + "|")
    kept = SHORT_PEAK - 0.29 * (SHORT_PEAK - CHANCE)
    for epochs in SHORT_EPOCHS:
        cells = []
        for n in sizes:
            worst = [[0.0, 0.0], [0.0, 0.0]]
            for j, final in enumerate((kept, SHORT_PEAK)):
                for fall in SHORT_FALLS:
                    level = short_levels(epochs, fall, final)
                    if level is not None:
                        r = rates(simulate(rng, n, level, runs, 0), CHANCE, n)
                        worst[j] = [max(a, b) for a, b in zip(worst[j], r)]
            cells.append(
                f"{pct(worst[0][0])} / {pct(worst[1][0])} -> "
                f"**{pct(worst[0][1])} / {pct(worst[1][1])}**"
            )
        print(f"| {epochs} | " + " | ".join(cells) + " |")
    sizes = (20, 60, 100, 360, 1000)
    print(
        f"\n#### Short runs on random labels: called collapsed (old -> new, {runs} runs per cell)\n"
    )
    print("| epochs | " + " | ".join(f"n_val {n}" for n in sizes) + " |")
    print("|---" * (len(sizes) + 1) + "|")
    for epochs in SHORT_EPOCHS:
        cells = []
        for n in sizes:
            acc = rng.binomial(n, CHANCE, (runs, epochs)) / n
            cells.append("{} -> **{}**".format(*map(pct, rates(acc, CHANCE, n))))
        print(f"| {epochs} | " + " | ".join(cells) + " |")
    sizes = (60, 100, 360, 1000)
    print(
        "\n#### Short runs that learned a little, flat, wandering: called collapsed, worst cell / "
        "mean of 12 cells (true level 0.25, 0.3, 0.4, 0.6 at chance 0.2 x wander sd 0.03, 0.06, "
        f"0.1; old -> new, {runs} runs per cell)\n"
    )
    print("| epochs | " + " | ".join(f"n_val {n}" for n in sizes) + " |")
    print("|---" * (len(sizes) + 1) + "|")
    for epochs in SHORT_EPOCHS:
        cells = []
        for n in sizes:
            worst, total = [0.0, 0.0], [0.0, 0.0]
            for p0 in (0.25, 0.3, 0.4, 0.6):
                for w in (0.03, 0.06, 0.1):
                    p = np.clip(p0 + w * rng.standard_normal((runs, epochs)), 0.0, 1.0)
                    r = rates(rng.binomial(n, p) / n, 0.2, n)
                    worst = [max(a, b) for a, b in zip(worst, r)]
                    total = [a + b / 12 for a, b in zip(total, r)]
            cells.append(
                f"{pct(worst[0])} / {pct(total[0])} -> **{pct(worst[1])} / {pct(total[1])}**"
            )
        print(f"| {epochs} | " + " | ".join(cells) + " |")


def speed_table(runs: int, seed: int) -> None:
    """What one accuracy call costs (`detect_run`), with the check that spares a run without a
    possible final stretch its noise estimate (`any_candidate`) and with that check made to
    always pass, side by side on the same runs. The runs are a sweep's usual mix: three in four
    learn and hold (final level 0.8), one in four falls (to 0.25, far below the threshold), at
    each n_val; the calls must agree run by run."""
    import sweep.analysis.detection as detection

    rng = np.random.default_rng(seed)
    finals = (0.8, 0.8, 0.8, 0.25)
    acc = [
        a
        for n_val in SIZES
        for final in finals
        for a in simulate(rng, n_val, levels(final), runs, 10)
    ]
    n_vals = [n for n in SIZES for _ in range(len(finals) * runs)]

    def timed(check, chunk) -> tuple[float, list[str]]:
        detection.any_candidate = check
        t0 = time.process_time()
        out = [
            detect_run(a, np.ones(a.size), np.full(a.size, 0.3), None, CHANCE, D, n_val=n).outcome
            for a, n in chunk
        ]
        return time.process_time() - t0, out

    # Chunks of 200 runs, each timed both ways back to back (in turn first): this machine's
    # speed drifts between seconds, so only neighbouring timings compare; the median ratio.
    real, skip = detection.any_candidate, lambda *a: True
    runs_of = list(zip(acc, n_vals))
    order = np.random.default_rng(seed).permutation(len(runs_of))  # every chunk a mix
    ratios, per_run, same = [], {"with the check": [], "without it": []}, True
    for i, start in enumerate(range(0, len(order), 200)):
        chunk = [runs_of[j] for j in order[start : start + 200]]
        both = [("with the check", real), ("without it", skip)]
        timings = {name: timed(check, chunk) for name, check in (both if i % 2 else both[::-1])}
        detection.any_candidate = real
        same &= timings["with the check"][1] == timings["without it"][1]
        for name, (seconds, _) in timings.items():
            per_run[name].append(seconds / len(chunk))
        ratios.append(timings["without it"][0] / timings["with the check"][0])
    assert same, "the check changed a call"
    print(f"\n## What one accuracy call costs ({len(acc):,} runs of 22 epochs, CPU time)\n")
    for name, seconds in per_run.items():
        print(f"- {name}: {1e6 * float(np.median(seconds)):.0f} us per run (median of chunks)")
    print(
        f"- ratio: {np.median(ratios):.2f}x, median of {len(ratios)} chunks "
        f"(quartiles {np.quantile(ratios, 0.25):.2f}-{np.quantile(ratios, 0.75):.2f}; same calls run by run)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1000, help="simulated runs per cell")
    ap.add_argument("--smoke", action="store_true", help="20 runs per cell: that it runs")
    ap.add_argument("--short", action="store_true", help="only the short runs' tables")
    ap.add_argument("--speed", action="store_true", help="only the cost of one call")
    args = ap.parse_args()
    runs = 20 if args.smoke else args.runs
    t0 = time.perf_counter()
    if args.speed or args.smoke:
        speed_table(runs, seed=2709)
        if args.speed:
            return
    if not args.short:
        power_table(runs, "the last 12 epochs", seed=2701)
        power_table(runs, "every epoch", seed=2702)
        shared_table(max(runs // 5, 10), seed=2703)
        null_tables(runs, seed=2704)
    short_power_table(runs, seed=2707)
    short_null_tables(runs, seed=2708)
    print(f"\n({time.perf_counter() - t0:.0f} s; seeds 2701-2708; detect defaults {D})")


if __name__ == "__main__":
    main()
