"""Where the time of the default sweep goes: one setting profiled in-process, phase by phase.

    python benchmarks/profile_sweep.py                 # default config, lr=0.1, no clipping
    python benchmarks/profile_sweep.py packing=off     # any overrides
    python benchmarks/profile_sweep.py --smoke         # 1 seed x 1 epoch: that it runs (CI)

Phases (cProfile, cumulative time of the functions that implement them): worker start-up
(imports, task data), data (batch gathering), forward, backward, gradient norm and clipping,
optimizer step, evaluation, per-epoch statistics, storage (encoding and writing the records
into an SQLite study). Prints seconds and shares; benchmarks/README.md keeps a copy.
"""

from __future__ import annotations

import cProfile
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# phase -> (file suffix, function name) pairs whose cumulative times are summed
PHASES = {
    "forward": [("packed_net.py", "forward"), ("models.py", "forward")],
    "backward": [("_tensor.py", "backward")],
    "grad norm + clip": [
        ("packed_net.py", "per_seed_norm"),
        ("gradients.py", "clip"),
        ("clip_grad.py", "clip_grad_norm_"),
    ],
    "optimizer step": [("optimizer.py", "wrapper")],
    "evaluation": [("packed.py", "_evaluate"), ("separate.py", "_evaluate")],
    "epoch statistics": [("epoch.py", "epoch_stats")],
    "loss": [("packed.py", "_loss"), ("scoring.py", "batch_loss")],
}


def startup_seconds() -> float:
    """A worker's fixed cost: interpreter, imports (torch, optuna, hydra) and task data."""
    code = (
        "import time; t=time.perf_counter(); import sweep.launch.worker, sweep.store; "
        "from sweep.config import load_config; from sweep.tasks import build_task; "
        "build_task(load_config([]).task); print(time.perf_counter()-t)"
    )
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    import torch

    from sweep.analysis.tables import trial_summary
    from sweep.config import load_config
    from sweep.core.records import decode_record, encode_record
    from sweep.store.storage import open_storage
    from sweep.tasks import build_task
    from sweep.training import train_setting, use_packing

    torch.set_num_threads(1)  # as a worker of the default sweep (threads=1)
    args = [a for a in sys.argv[1:] if a != "--smoke"]
    if "--smoke" in sys.argv[1:]:
        args = ["epochs=1", "seeds=1", "model.hidden_size=8", *args]
    cfg = load_config(args)
    task = build_task(cfg.task)
    setting = {"lr": 0.1, "clip": None, "batch_size": cfg.grid.batch_size[0]}
    seeds = list(range(cfg.seeds))
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    records = train_setting(task, cfg, setting, seeds, torch.device("cpu"))
    prof.disable()
    train_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        import optuna

        storage = open_storage(f"sqlite:///{tmp}/p.db")
        study = optuna.create_study(
            study_name="p", storage=storage, directions=["maximize", "minimize"]
        )
        start = time.perf_counter()
        trial = study.ask()
        decoded = [decode_record(encode_record(r)) for r in records]
        summary = trial_summary(decoded, task.chance(), cfg.detect)
        for r in records:
            study._storage.set_trial_user_attr(trial._trial_id, f"run_{r.seed}", encode_record(r))
        for k, v in summary.items():
            study._storage.set_trial_user_attr(trial._trial_id, k, v)
        study.tell(trial, [summary["mean_best_acc"], summary["collapse_rate"]])
        storage_s = time.perf_counter() - start

    stats = pstats.Stats(prof)
    rows = {}
    for phase, targets in PHASES.items():
        total = 0.0
        for (file, _line, func), (_cc, _nc, _tt, ct, callers) in stats.stats.items():
            if any(file.endswith(f) and func == name for f, name in targets):
                # count each function once: skip calls made from another listed function
                if not any(c[0].endswith(f) and c[2] == n for c in callers for f, n in targets):
                    total += ct
        rows[phase] = total
    gather = sum(
        ct
        for (file, _, func), (_, _, _, ct, _) in stats.stats.items()
        if func in ("index_select", "<method 'index_select' of 'torch._C.TensorBase' objects>")
    )
    rows["data (batch gathering)"] = gather
    rows["other training overhead"] = max(0.0, train_s - sum(rows.values()))
    startup = startup_seconds()
    total = train_s + storage_s + startup
    epochs = cfg.epochs * len(seeds)
    print(
        f"default setting {setting}, {len(seeds)} seeds x {cfg.epochs} epochs, "
        f"packing={'on' if use_packing(cfg, torch.device('cpu')) else 'off'}, 1 thread"
    )
    print(f"{'phase':28} {'seconds':>8} {'share':>6}")
    for phase, sec in sorted(rows.items(), key=lambda kv: -kv[1]):
        print(f"{phase:28} {sec:8.2f} {sec / total:6.1%}")
    print(f"{'storage (encode + write)':28} {storage_s:8.2f} {storage_s / total:6.1%}")
    print(f"{'worker start-up (once)':28} {startup:8.2f} {startup / total:6.1%}")
    print(
        f"total {total:.2f} s; training {train_s:.2f} s = {1000 * train_s / epochs:.0f} ms per seed-epoch "
        f"(cProfile adds overhead to Python-level calls)"
    )


if __name__ == "__main__":
    main()
