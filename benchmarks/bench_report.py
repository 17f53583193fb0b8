"""How `sweep report` scales: a synthetic study of many runs, then the report timed end to end.

    python benchmarks/bench_report.py                       # 10,000 runs x 100 epochs
    python benchmarks/bench_report.py --runs 2000 --check   # exit 1 when a target is missed
    python benchmarks/bench_report.py --smoke               # 40 runs x 10 epochs: that it runs (CI)
    python benchmarks/bench_report.py --real-epochs 40      # and one real run's record, for scale

Writes a study with realistic curves (learning, plateaus, spikes, collapses, NaN ends) straight
into an SQLite storage through Optuna's API, exactly as workers store runs, then runs
`sweep report` in a subprocess and prints its wall time, its peak memory (max RSS) and the
storage size per run. Targets (issue 7): under 60 s, about 20 KB of storage per run at most.
`--real-epochs N` also trains one seed of the default sweep (lr 0.1, clip 1, batch 32) for N
epochs with `sweep run` and prints what its stored record holds: its curve columns (the signals
of why a run collapsed among them) and its size.
"""

from __future__ import annotations

import argparse
import itertools
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def synthetic_record(rng: np.random.Generator, seed: int, epochs: int, lr: float) -> dict:
    """A plausible run: accuracy rises to a plateau; high LRs spike, collapse or go NaN."""
    from sweep.core.records import encode_floats

    t = np.arange(1, epochs + 1)
    top = 0.95 - 0.3 * rng.random() * (lr > 0.3)
    acc = 0.1 + (top - 0.1) * (1 - np.exp(-t / (5 + 20 * rng.random())))
    acc += rng.normal(0, 0.01, epochs)
    loss = 2.3 * np.exp(-t / 15) + 0.05 + rng.normal(0, 0.01, epochs) ** 2
    norm = 0.5 + rng.gamma(2.0, 0.3, epochs) * (1 + 5 * lr)
    top_frac = np.full(epochs, 0.12)
    nonfinite, nonfinite_epoch = None, None
    fate = rng.random() * lr
    if fate > 0.5:  # collapse to a constant output
        k = int(rng.integers(epochs // 3, epochs - 5))
        acc[k:] = 0.1
        loss[k:] = 2.3
        top_frac[k:] = 1.0
    elif fate > 0.3:  # non-finite: curves end at epoch k
        k = int(rng.integers(1, epochs))
        acc, loss, norm, top_frac, t = acc[:k], loss[:k], norm[:k], top_frac[:k], t[:k]
        acc[-1] = loss[-1] = top_frac[-1] = np.nan
        norm[-1] = np.inf
        nonfinite, nonfinite_epoch = "loss", k
    n = len(t)
    curves = {
        "train_loss": loss * 0.9,
        "val_loss": loss,
        "val_acc": np.clip(acc, 0, 1),
        "grad_norm_mean": norm,
        "grad_norm_max": norm * 3,
        "grad_norm_p90": norm * 1.5,
        "clip_fraction": np.clip(rng.random(n) * lr, 0, 1),
        "pred_top_frac": top_frac,
        "epoch_lr": np.full(n, lr),
    }
    return {
        "seed": seed,
        "nonfinite": nonfinite,
        "nonfinite_epoch": nonfinite_epoch,
        "steps": 40 * n,
        "seconds": 0.1 * n,
        "curves": {k: encode_floats(v) for k, v in curves.items()},
    }


def build_study(db: Path, runs: int, epochs: int, seeds: int) -> tuple[int, float]:
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution

    from sweep.config import comparable_part, load_config
    from sweep.store.studies import ATTR_COMPARABLE, ATTR_CONFIG, ATTR_TASK, DIRECTIONS

    n_settings = runs // seeds
    side = max(1, round(n_settings ** (1 / 3)))
    lrs = [float(f"{v:.3g}") for v in np.logspace(-3, 0, side)]
    clips = [None] + [float(c) for c in np.logspace(-1, 1, side - 1)]
    batches = [16 * 2**i for i in range(max(1, math.ceil(n_settings / (side * side))))]
    settings = [
        dict(lr=lr, clip=c, batch_size=b) for b, lr, c in itertools.product(batches, lrs, clips)
    ][:n_settings]
    cfg = load_config(
        [
            f"epochs={epochs}",
            f"seeds={seeds}",
            f"grid.lr={lrs}",
            f"grid.batch_size={batches}",
            "grid.clip=[" + ",".join("null" if c is None else str(c) for c in clips) + "]",
        ]
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="big", storage=f"sqlite:///{db}", directions=list(DIRECTIONS)
    )
    study.set_user_attr(ATTR_CONFIG, cfg.to_dict())
    study.set_user_attr(ATTR_COMPARABLE, comparable_part(cfg))
    study.set_user_attr(ATTR_TASK, {"name": "digits", "kind": "classification", "chance": 0.1})
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    batch = []
    for setting in settings:
        attrs = {"setting": setting, "seeds": list(range(seeds))}
        for s in range(seeds):
            attrs[f"run_{s}"] = synthetic_record(rng, s, epochs, setting["lr"])
        params = {"lr": setting["lr"], "batch_size": setting["batch_size"]}
        dists = {
            "lr": FloatDistribution(setting["lr"], setting["lr"], log=True),
            "batch_size": IntDistribution(setting["batch_size"], setting["batch_size"]),
        }
        if setting["clip"] is not None:
            params["clip"] = setting["clip"]
            dists["clip"] = FloatDistribution(setting["clip"], setting["clip"], log=True)
        batch.append(
            optuna.trial.create_trial(
                params=params, distributions=dists, values=[0.5, 0.1], user_attrs=attrs
            )
        )
        if len(batch) == 200:
            study.add_trials(batch)
            batch = []
    if batch:
        study.add_trials(batch)
    return len(settings), time.perf_counter() - start


def real_record(epochs: int) -> None:
    """Train one seed of the default sweep for `epochs` epochs and print its record's size."""
    import json

    import optuna

    with tempfile.TemporaryDirectory() as tmp:
        args = ["grid.lr=[0.1]", "grid.clip=[1.0]", "grid.batch_size=[32]", "seeds=1"]
        args += [f"epochs={epochs}", "workers=1", f"results_dir={tmp}", "study.name=real"]
        p = subprocess.run(
            [sys.executable, "-m", "sweep", "worker", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if p.returncode != 0:
            raise SystemExit(p.stderr)
        study = optuna.load_study(study_name="real", storage=f"sqlite:///{tmp}/lrsweep.db")
        record = study.trials[0].user_attrs["run_0"]
        kb = len(json.dumps(record)) / 1024
        print(
            f"a real run (default sweep, {epochs} epochs): {len(record['curves'])} curve columns, "
            f"its record {kb:.1f} KB as stored (JSON)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--check", action="store_true")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="a toy size (40 runs x 10 epochs): that the script runs",
    )
    ap.add_argument(
        "--real-epochs",
        type=int,
        default=0,
        help="also train one real run of the default sweep this long and print its record's size",
    )
    args = ap.parse_args()
    if args.real_epochs:
        real_record(args.real_epochs)
    if args.smoke:
        args.runs, args.epochs, args.seeds = 40, 10, 2
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "lrsweep.db"
        n_settings, t_build = build_study(db, args.runs, args.epochs, args.seeds)
        runs = n_settings * args.seeds
        size_kb = db.stat().st_size / 1024
        start = time.perf_counter()
        p = subprocess.run(
            [sys.executable, "-m", "sweep", "report", "study.name=big", f"results_dir={tmp}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        t_report = time.perf_counter() - start
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if p.returncode != 0:
            raise SystemExit(p.stderr)
        figures = len(list((Path(tmp) / "big" / "figures").rglob("*.png")))
        print(
            f"study: {n_settings} settings x {args.seeds} seeds = {runs} runs x {args.epochs} epochs "
            f"(written in {t_build:.0f} s)"
        )
        print(f"storage: {size_kb / 1024:.1f} MB, {size_kb / runs:.1f} KB per run (target <= 20)")
        print(
            f"sweep report: {t_report:.1f} s (target < 60), peak memory {rss_mb:.0f} MB, {figures} figures"
        )
        print(p.stdout.strip())
        if args.check and (t_report >= 60 or size_kb / runs > 20):
            raise SystemExit("target missed")


if __name__ == "__main__":
    main()
