"""`sweep run` and `sweep worker`: prepare the study, start local workers, watch, report.

Order of work (every user error is found before anything is written to the storage):
validate config -> check results_dir, device and storage URL (no connection yet) ->
build task data -> check batch sizes -> open storage ->
check the study is comparable -> reclaim orphaned trials -> queue missing (setting, seeds) ->
start workers (child processes) -> progress until done or stopped -> tables, figures, report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from sweep.analysis.data_checks import data_warnings
from sweep.config import EXECUTION_KEYS, Config, config_from_dict
from sweep.config.targets import TargetModel
from sweep.core.devices import device_for_worker, plan_worker_devices, usable_cores
from sweep.core.errors import UserError
from sweep.core.redact import redact_url
from sweep.run.checkpoints import clear_all
from sweep.run.find import auto_grid
from sweep.run.preparation import check_device, checked_task, prepare, task_cache_path
from sweep.run.progress import Progress
from sweep.run.worker import ENV_CONFIG, ENV_DEVICE, ENV_INDEX, ENV_PARENT, ENV_THREADS, EXIT_STOPPED
from sweep.store.progress import snapshot
from sweep.store.storage import open_storage
from sweep.store.studies import ATTR_CONFIG, ATTR_TASK, study_names
from sweep.training.models import param_group_names

EXIT_INTERRUPTED = 130


def _threads_per_worker(workers: int) -> int:
    return max(1, usable_cores() // workers)


def _child_setup() -> None:
    """Runs in the child before exec. The launcher owns Ctrl-C: children ignore SIGINT and stop
    on the SIGTERM it forwards. On Linux the child also gets SIGTERM when the launcher dies
    (even by SIGKILL), so it checkpoints and releases its trial instead of running unobserved;
    the death signal survives exec, so there is no window where it is not armed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _spawn(index: int, device: str, threads: int) -> subprocess.Popen:
    """Start a worker process; it imports its libraries, then waits for `_go` or `_dismiss`."""
    env = dict(os.environ)
    env.pop(ENV_CONFIG, None)  # the config comes through stdin once the study is ready
    env[ENV_INDEX] = str(index)
    env[ENV_DEVICE] = device
    env[ENV_THREADS] = str(threads)
    env[ENV_PARENT] = str(os.getpid())
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    return subprocess.Popen(
        [sys.executable, "-m", "sweep.run.worker"], env=env, stdin=subprocess.PIPE, text=True,
        preexec_fn=_child_setup,
    )


def _go(child: subprocess.Popen, cfg: Config, task_cache: Path) -> None:
    """Hand a waiting worker its config and the task data file: it starts claiming trials."""
    child.stdin.write(json.dumps({"config": cfg.to_dict(), "task_cache": str(task_cache)}) + "\n")
    child.stdin.close()


def _dismiss(child: subprocess.Popen) -> None:
    """A worker that is not needed: end of input, and it exits without touching anything."""
    try:
        child.stdin.close()
    except OSError:
        pass


class _Stopper:
    """First SIGINT/SIGTERM: ask workers to stop after their epoch; second: kill them."""

    def __init__(self) -> None:
        self.count = 0
        self.children: list[subprocess.Popen] = []

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count == 1:
            print("\nstopping: workers finish their current epoch, checkpoint and release their trials "
                  "(press Ctrl-C again to stop at once)", file=sys.stderr, flush=True)
            for c in self.children:
                if c.poll() is None:
                    c.send_signal(signal.SIGTERM)
        else:
            for c in self.children:
                if c.poll() is None:
                    c.kill()


def stored_config(cfg: Config, set_keys: set[str]) -> Config:
    """For `sweep worker`: when the user named only execution keys (storage, study name,
    workers, device, ...), work on the study as it was configured by its `sweep run`."""
    if any(k.split(".")[0] not in EXECUTION_KEYS for k in set_keys):
        return cfg
    # Only where and how to run was given: the study must exist, or this worker would start
    # the default sweep under a mistyped study name or storage.
    storage = open_storage(cfg.storage_url(), create=False)
    names = study_names(storage)
    if cfg.study.name not in names:
        there = f"studies there: {', '.join(names)}" if names else "it holds no study yet"
        raise UserError(
            f"study.name: no study {cfg.study.name!r} in {redact_url(cfg.storage_url())} ({there}); "
            f"start it with `sweep run ...`, or give `sweep worker` the sweep's config keys to create it"
        )
    import optuna

    stored = optuna.load_study(study_name=cfg.study.name, storage=storage).user_attrs.get(ATTR_CONFIG)
    if not stored:
        return cfg
    mine = cfg.to_dict()
    for key in EXECUTION_KEYS:
        stored[key] = mine[key]
    return config_from_dict(stored)


def launch(cfg: Config, write_results: bool = True, set_keys: Optional[set[str]] = None,
           extra_work: Sequence[tuple[dict[str, Any], list[int]]] = ()) -> int:
    """Run the study to completion with local workers; returns the process exit status.

    `write_results=False` is `sweep worker`: no report at the end, and the study's own config
    is used when only execution keys were given (`set_keys`). `extra_work`: (setting, seeds)
    beyond the grid's seeds (`sweep refine`).
    """
    if not write_results and set_keys is not None:
        cfg = stored_config(cfg, set_keys)
    import torch

    n_gpu = torch.cuda.device_count() if cfg.device != "cpu" else 0
    check_device(cfg.device, n_gpu)
    task, found = None, None
    if cfg.grid.lr_auto:  # the learning rates come from a range test: the grid is known after it
        task = checked_task(cfg)
        cfg, found = auto_grid(cfg, task, device_for_worker(cfg.device, n_gpu, 0))
    # Worker count and threads follow the configured grid, not how much is left, so that a
    # resumed sweep computes with the same thread count as the first run.
    devices = plan_worker_devices(cfg.device, n_gpu, cfg.workers, len(cfg.grid.settings()), usable_cores())
    planned = len(devices)
    device = "cpu" if devices[0] == "cpu" else ", ".join(sorted(set(devices)))
    threads = _threads_per_worker(planned) if devices[0] == "cpu" else 1
    # Start the workers now: their start-up (interpreter, torch and optuna imports, a few
    # seconds) overlaps with validating the data and preparing the study. They touch nothing
    # until `_go` hands them the config.
    pending = [_spawn(i, dev, threads) for i, dev in enumerate(devices)]
    try:
        storage, study, task = prepare(cfg, task, extra_work)
    except BaseException:
        for child in pending:
            _dismiss(child)
        raise
    if found is not None:
        from sweep.run.find import store_find

        store_find(study, found)
    snap = snapshot(study, cfg)
    workers = min(planned, snap.waiting) if snap.waiting else (1 if snap.running else 0)
    print(
        f"lrsweep: study {cfg.study.name!r} in {redact_url(cfg.storage_url())}\n"
        f"  task {task.name} ({task.n_train} train / {int(task.x_val.shape[0])} validation sequences, "
        f"chance {task.chance():.3f}), model {cfg.model.name}, optimizer {cfg.optimizer.name}, {cfg.epochs} epochs\n"
        f"  grid: {snap.total} settings x {cfg.seeds} seeds; {snap.done} done, {snap.waiting + snap.running} to run; "
        f"{workers if snap.waiting else 0} worker(s) on {device}",
        flush=True,
    )
    if cfg.optimizer.group_lr_mult:
        names = param_group_names(cfg.model, task)
        print("  discriminative lrs (optimizer.group_lr_mult): "
              + ", ".join(f"{n} at lr x {m:g}" for n, m in zip(names, cfg.optimizer.group_lr_mult)), flush=True)
    for warning in data_warnings(study.user_attrs.get(ATTR_TASK)):
        print(f"  warning: {warning}", flush=True)
    if isinstance(cfg.model, TargetModel) and cfg.packing != "off":
        print(f"  packing: off for the custom model {cfg.model.target} (packing stacks lrsweep's own LSTM/GRU "
              f"only); its seeds train as separate models", flush=True)
    stopper = _Stopper()
    stopper.install()
    progress = Progress()
    codes: list[Optional[int]] = []
    cache = task_cache_path(cfg, study.user_attrs[ATTR_TASK]["fingerprint"])
    for i, child in enumerate(pending):
        _go(child, cfg, cache) if i < workers else _dismiss(child)
    stopper.children = pending[:workers]
    if stopper.children:
        if write_results:
            import sweep.report.write  # noqa: F401  (matplotlib & co. load while the workers train)
        last_snapshot = 0.0
        while True:
            codes = [c.poll() for c in stopper.children]
            if all(code is not None for code in codes):
                break
            if time.monotonic() - last_snapshot >= 1.0:  # the storage is read once a second
                progress.update(snapshot(study, cfg))
                last_snapshot = time.monotonic()
            time.sleep(0.1)  # ... but the end of the workers is noticed at once
    final = snapshot(study, cfg)
    progress.finish(final)
    if stopper.count:
        print(f"stopped with {final.done}/{final.total} settings done; run the same command to resume.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    crashed = [c for c in codes if c not in (0, None, EXIT_STOPPED)]
    if final.done == final.total and not (final.running or final.waiting or final.failed_settings):
        clear_all(cfg.study_dir / "checkpoints")  # nothing left that could resume from one
    paths = {}
    if write_results and final.complete_runs:
        from sweep.report.write import results_line, write_results

        paths = write_results(study, cfg.results_dir)
        print(results_line(cfg.study_dir, paths))
    if final.failed_settings:
        print(f"{final.failed_settings} setting(s) failed with an error (see above, or `sweep status`); "
              f"run the same command to retry them.", file=sys.stderr)
        return 1
    if crashed or final.done < final.total:
        print(f"{final.total - final.done} setting(s) not done (a worker exited with {crashed}); "
              f"run the same command to resume.", file=sys.stderr)
        return 1
    return 0
