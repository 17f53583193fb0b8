"""`sweep run` and `sweep worker`: prepare the study, start local workers, watch, report.

Order of work (every user error is found before anything is written to the storage):
validate config -> check results_dir, device and storage URL (no connection yet) ->
build task data -> check batch sizes -> open storage ->
check the study is comparable -> reclaim orphaned trials -> queue missing (setting, seeds) ->
start workers (child processes) -> progress until done or stopped -> tables, figures, report.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from sweep.analysis.data_checks import data_warnings
from sweep.config import EXECUTION_KEYS, Config, apply_overrides, config_from_dict
from sweep.config.targets import TargetModel
from sweep.core.devices import device_for_worker, plan_worker_devices, usable_cores
from sweep.core.errors import UserError
from sweep.core.files import check_writable
from sweep.core.redact import redact_url
from sweep.run.checkpoints import clear_all
from sweep.run.progress import Progress
from sweep.run.worker import ENV_CONFIG, ENV_DEVICE, ENV_INDEX, ENV_PARENT, ENV_THREADS, EXIT_STOPPED
from sweep.store.progress import snapshot
from sweep.store.queue import enqueue, plan_work, uncovered
from sweep.store.storage import check_storage_url, open_storage
from sweep.store.studies import ATTR_CONFIG, ATTR_TASK, load_study, open_or_create_study, study_names
from sweep.store.workers import reclaim_orphans
from sweep.tasks import TaskData, build_task
from sweep.tasks.data import save_task
from sweep.tasks.summary import data_summary
from sweep.training.models import check_group_lr_mult, check_model, param_group_names

EXIT_INTERRUPTED = 130


def task_info(task: TaskData, normalized: Optional[bool] = None) -> dict[str, Any]:
    """Facts about the data stored in the study (the report needs them without the data).
    `normalized`: the task's `normalize` option (None when it has none)."""
    h = hashlib.sha1()
    for t in (task.x_train, task.y_train, task.x_val, task.y_val, task.lengths_train, task.lengths_val):
        if t is not None:
            h.update(t.contiguous().cpu().numpy().tobytes())
    return {
        "name": task.name,
        "kind": task.kind,
        "chance": task.chance(),
        "n_train": task.n_train,
        "n_val": int(task.x_val.shape[0]),
        "steps": int(task.x_train.shape[1]),
        "input_dim": task.input_dim,
        "output_dim": task.output_dim,
        "per_step": task.per_step,
        "tolerance": task.tolerance,
        "fingerprint": h.hexdigest(),
        "info": task.info,
        "data": data_summary(task, normalized),  # input scale and class balance, for the report's header
    }


def check_device(device: str, n: int) -> None:
    """`device=cuda[:N]` needs that GPU among the `n` of this machine (checked before any data
    or storage)."""
    if not device.startswith("cuda"):
        return
    import torch

    if n == 0:
        raise UserError(
            f"device: {device!r} asks for a CUDA GPU, but torch {torch.__version__} sees none on this machine; "
            f"use device=auto (GPU when there is one) or device=cpu"
        )
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= n:
        raise UserError(f"device: {device!r} but this machine has {n} GPU(s), cuda:0..cuda:{n - 1}; "
                        f"pick one of them, or device=cuda to use them all")


def checked_task(cfg: Config) -> TaskData:
    """Every check that needs no storage connection, then the task data (built once)."""
    check_writable(cfg.study_dir)
    if cfg.study.storage:  # a bad URL fails before the data is built (the default one is made below)
        check_storage_url(cfg.study.storage)
    task = build_task(cfg.task)
    check_model(cfg.model, task)  # a user's model: importable, a Module, outputs of the right shape
    check_group_lr_mult(setting_configs(cfg), task)  # one lr multiplier per parameter group
    return task


def setting_configs(cfg: Config) -> list[Config]:
    """The config of each combination of the extra grid axes' values (just `cfg` without any)."""
    import itertools

    if not cfg.grid.extra:
        return [cfg]
    paths = [path for path, _ in cfg.grid.extra]
    return [apply_overrides(cfg, dict(zip(paths, values)))
            for values in itertools.product(*(values for _, values in cfg.grid.extra))]


def prepare(cfg: Config, task: Optional[TaskData] = None,
            extra_work: Sequence[tuple[dict[str, Any], list[int]]] = ()) -> tuple[Any, Any, TaskData]:
    """Validate everything, then open/create the study and queue the missing work (the grid's,
    and `extra_work` beyond it: seeds `sweep refine` adds to single settings)."""
    task = task if task is not None else checked_task(cfg)
    too_big = [b for b in cfg.grid.batch_size if b > task.n_train]
    if too_big:
        raise UserError(
            f"grid.batch_size: every batch size must be <= the {task.n_train} training sequences, got {too_big}; "
            f"use smaller batch sizes (a batch cannot hold more sequences than the training set)"
        )
    storage = _storage(cfg)
    info = task_info(task, getattr(cfg.task, "normalize", None))
    study = open_or_create_study(storage, cfg, info)
    # Workers read the data built here instead of building it again (tokenising a text corpus
    # or parsing a large CSV once, not once per worker).
    save_task(task, task_cache_path(cfg, info["fingerprint"]))
    reclaim_orphans(study, cfg.study.grace_seconds)
    trials = study.get_trials(deepcopy=False)
    enqueue(study, plan_work(cfg, trials) + uncovered(extra_work, trials))
    return storage, study, task


def _storage(cfg: Config) -> Any:
    if not cfg.study.storage:  # the default SQLite file lives in results_dir
        cfg.study_dir.parent.mkdir(parents=True, exist_ok=True)
    return open_storage(cfg.storage_url(), cfg.study.heartbeat_seconds, cfg.study.grace_seconds)


def auto_grid(cfg: Config, task: TaskData, device: str) -> tuple[Config, Optional[Any]]:
    """`grid.lr=auto`: the config with the learning rates the study's range tests propose (run
    now when it has none), and the new result to store once the study is prepared."""
    import torch

    from sweep.run.find import find_lrs, resolve_grid, stored_find
    from sweep.training.accelerator import configure_device

    storage = _storage(cfg)
    study = load_study(storage, cfg.study.name) if cfg.study.name in study_names(storage) else None
    result = stored_find(study, cfg) if study is not None else None
    fresh = result is None
    if fresh:
        print("grid.lr=auto: running the learning-rate range test first", flush=True)
        configure_device(torch.device(device))
        result = find_lrs(cfg, task, torch.device(device), log=lambda m: print(m, flush=True))
    print(result.summary(), flush=True)
    return resolve_grid(cfg, result), (result if fresh else None)


def task_cache_path(cfg: Config, fingerprint: str) -> Path:
    return cfg.study_dir / f"task-{fingerprint[:16]}.pt"


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
