"""`sweep run` and `sweep worker`: prepare the study, start local workers, watch, report.

Order of work (every user error is found before anything is written to the storage):
validate config -> check the device and a user's training (command, function) -> check
results_dir and the storage URL, build and check the task data (sweep.launch.preparation) -> open
storage -> check the study is comparable -> reclaim orphaned trials -> queue missing (setting,
seeds) -> start workers (child processes, or this process for a notebook's function) -> progress
until done or stopped -> tables, figures, report.html and the verdict on the terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sweep.analysis.data_checks import data_warnings
from sweep.config import EXECUTION_KEYS, Config, config_from_dict
from sweep.config.targets import TargetModel
from sweep.config.trainers import TargetTrainer
from sweep.core.devices import device_for_worker, plan_worker_devices, usable_cores
from sweep.core.errors import UserError
from sweep.core.redact import redact_url
from sweep.launch.children import Stopper, dismiss, go, reap, spawn, start_method, stop_unused
from sweep.launch.find import auto_grid
from sweep.launch.first_start import FirstStart
from sweep.launch.preparation import check_device, checked_task, has_work, prepare, task_cache_path
from sweep.launch.status_line import StatusLine, Ticker
from sweep.launch.worker import EXIT_STOPPED, EXIT_USER_ERROR
from sweep.store.counts import count_study
from sweep.store.storage import DatabaseLocked, open_storage
from sweep.store.studies import ATTR_CONFIG, ATTR_TASK, study_names
from sweep.trainers.checks import check_trainer
from sweep.training.checkpoints import clear_all
from sweep.training.models import param_group_names

EXIT_INTERRUPTED = 130


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

    stored = optuna.load_study(study_name=cfg.study.name, storage=storage).user_attrs.get(
        ATTR_CONFIG
    )
    if not stored:
        return cfg
    mine = cfg.to_dict()
    for key in EXECUTION_KEYS:
        stored[key] = mine[key]
    return config_from_dict(stored)


def launch(
    cfg: Config,
    write_results: bool = True,
    set_keys: set[str] | None = None,
    extra_work: Sequence[tuple[dict[str, Any], list[int]]] = (),
    function: Any = None,
) -> int:
    """Run the study to completion with local workers; returns the process exit status.

    `write_results=False` is `sweep worker`: no report at the end, and the study's own config
    is used when only execution keys were given (`set_keys`). `extra_work`: (setting, seeds)
    beyond the grid's seeds (`sweep refine`). `function`: a training function given as an
    object (the Python API): it runs in this process, one worker.
    """
    if not write_results and set_keys is not None:
        cfg = stored_config(cfg, set_keys)
    import torch

    n_gpu = torch.cuda.device_count() if cfg.device != "cpu" else 0
    check_device(cfg.device, n_gpu)
    notes = (
        check_trainer(cfg) if function is None else []
    )  # a user's training: before anything is written
    task, found = None, None
    if cfg.grid.lr_auto:  # the learning rates come from a range test: the grid is known after it
        task = checked_task(cfg)
        cfg, found = auto_grid(cfg, task, device_for_worker(cfg.device, n_gpu, 0))
    devices = plan_worker_devices(
        cfg.device,
        n_gpu,
        1 if function is not None else cfg.workers,
        len(cfg.grid.settings()),
        usable_cores(),
    )
    # Start the workers now: their start-up (forked from this process, or a fresh interpreter
    # that imports torch and optuna: a few seconds) overlaps with validating the data and
    # preparing the study. They touch nothing until `go` hands them the config. Each computes
    # with `threads` threads, whatever the machine: results do not depend on its cores or on
    # the number of workers. A study with nothing left to do starts none.
    trained_here = found is not None
    pending = (
        []
        if function is not None or not has_work(cfg, extra_work)
        else [
            spawn(i, dev, cfg.threads, start_method(dev, trained_here))
            for i, dev in enumerate(devices)
        ]
    )
    before = FirstStart.look(cfg)  # a first start undone if a run shows the user's mistake
    try:
        storage, study, task = prepare(cfg, task, extra_work)
    except BaseException:
        stop_unused(pending)
        raise
    if found is not None:
        from sweep.launch.find import store_find

        store_find(study, found)
    snap = count_study(study, cfg)
    workers = min(len(devices), snap.waiting) if snap.waiting else (1 if snap.running else 0)
    if function is None:  # work queued since the look before preparing (another launcher)
        pending += [
            spawn(i, dev, cfg.threads, start_method(dev, trained_here))
            for i, dev in enumerate(devices[len(pending) : workers], start=len(pending))
        ]
    announce(cfg, task, study, snap, workers, devices, notes)
    status_line = StatusLine()
    if function is not None:
        codes, stopped = _run_inline(
            cfg, study, devices[0], function, workers, status_line, write_results
        )
    else:
        codes, stopped = _run_children(cfg, study, pending, workers, status_line, write_results)
    if EXIT_USER_ERROR in codes:  # a worker printed the one-line error; nothing more to say
        try:
            before.undo(cfg)  # a study created by this command, with no result: deleted again
        except UserError:  # (the error was the storage itself, e.g. locked: it stays as it is)
            pass
        return EXIT_USER_ERROR
    final = count_study(study, cfg)
    status_line.finish(final)
    if stopped:
        print(
            f"stopped with {final.done}/{final.total} settings done; run the same command to resume.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return finish(cfg, study, final, codes, write_results)


def announce(
    cfg: Config,
    task: Any,
    study: Any,
    snap: Any,
    workers: int,
    devices: list[str],
    notes: list[str],
) -> None:
    """What the sweep is about to do, in a few lines (and the warnings worth reading first)."""
    device = "cpu" if devices[0] == "cpu" else ", ".join(sorted(set(devices)))
    if task is not None:
        what = (
            f"task {task.name} ({task.n_train} train / {int(task.x_val.shape[0])} validation sequences, "
            f"chance {task.chance():.3f}), model {cfg.model.name}, optimizer {cfg.optimizer.name}"
        )
    else:
        what = f"trainer {describe_trainer(cfg.trainer)}"
    print(
        f"lrsweep: study {cfg.study.name!r} in {redact_url(cfg.storage_url())}\n"
        f"  {what}, {cfg.epochs} epochs\n"
        f"  grid: {snap.total} settings x {cfg.seeds} seeds; {snap.done} done, {snap.waiting + snap.running} to run; "
        f"{workers if snap.waiting else 0} worker(s) on {device}",
        flush=True,
    )
    for note in notes:
        print(f"  warning: {note}", flush=True)
    if task is None:
        return
    if cfg.optimizer.group_lr_mult:
        names = param_group_names(cfg.model, task)
        print(
            "  discriminative lrs (optimizer.group_lr_mult): "
            + ", ".join(f"{n} at lr x {m:g}" for n, m in zip(names, cfg.optimizer.group_lr_mult)),
            flush=True,
        )
    for warning in data_warnings(study.user_attrs.get(ATTR_TASK)):
        print(f"  warning: {warning}", flush=True)
    if isinstance(cfg.model, TargetModel) and cfg.packing != "off":
        print(
            f"  packing: off for the custom model {cfg.model.target} (packing stacks lrsweep's own LSTM/GRU "
            f"only); its seeds train as separate models",
            flush=True,
        )


def describe_trainer(trainer: Any) -> str:
    """A user's training in a few words: what runs, and the validation facts the calls use."""
    facts = (
        f"n_val {trainer.n_val}, chance {trainer.chance}"
        if trainer.n_val is not None and trainer.chance is not None
        else "no n_val and chance: calls from the loss"
    )
    if getattr(trainer, "metric", "auto") != "auto":
        facts += f", metric={trainer.metric}"
    if isinstance(trainer, TargetTrainer):
        return f"function {trainer.target} ({facts})"
    return f"command `{trainer.command}` ({facts})"


def _run_children(
    cfg: Config,
    study: Any,
    pending: list[Any],
    workers: int,
    status_line: StatusLine,
    write_results: bool,
) -> tuple[list[int | None], bool]:
    """Hand the needed workers their config, watch them until they exit: (exit codes, stopped?).
    Every worker started, needed or not, has exited when this returns."""
    with Stopper() as stopper:
        try:
            return _watch(cfg, study, pending, workers, status_line, write_results, stopper)
        finally:
            reap(pending)


def _watch(
    cfg: Config,
    study: Any,
    pending: list[Any],
    workers: int,
    status_line: StatusLine,
    write_results: bool,
    stopper: Stopper,
) -> tuple[list[int | None], bool]:
    cache = task_cache_path(cfg, study.user_attrs[ATTR_TASK]["fingerprint"])
    for i, child in enumerate(pending):
        go(child, cfg, cache) if i < workers else dismiss(child)
    stopper.children = pending[:workers]
    codes: list[int | None] = []
    if stopper.children:
        if write_results:
            import sweep.report.write  # noqa: F401  (matplotlib & co. load while the workers train)
        last_count, told = 0.0, False
        while True:
            codes = [c.poll() for c in stopper.children]
            if all(code is not None for code in codes):
                break
            if EXIT_USER_ERROR in codes and not told:  # one worker hit the user's mistake: all stop
                stopper.stop_quietly()
                told = True
            if time.monotonic() - last_count >= 1.0 and not told:  # the storage, once a second
                try:
                    status_line.update(count_study(study, cfg))
                except DatabaseLocked:  # the workers wait for the lock too, and tell if it stays
                    pass
                last_count = time.monotonic()
            time.sleep(0.1)  # ... but the end of the workers is noticed at once
    return codes, bool(stopper.count)


def _run_inline(
    cfg: Config,
    study: Any,
    device: str,
    function: Any,
    workers: int,
    status_line: StatusLine,
    write_results: bool,
) -> tuple[list[int | None], bool]:
    """The worker loop in this process (a training function from a notebook), with the progress
    line kept up to date from a thread meanwhile; Ctrl-C releases the running trial and raises
    KeyboardInterrupt."""
    from sweep.launch.worker import StopFlag, run_worker

    if not workers:
        return [], False
    import torch

    # The study's `threads`, as a worker process gets them: results do not depend on the
    # caller's setting, and torch's default (every core) crawls when other processes share the
    # cores (100x slower per step for a small GRU on 2 busy cores). The caller's is restored.
    before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        with Ticker(lambda: status_line.update(count_study(study, cfg))):
            code = run_worker(cfg, 0, StopFlag(), device=device, function=function)
    finally:
        torch.set_num_threads(before)
    return [code], False


def finish(
    cfg: Config, study: Any, final: Any, codes: list[int | None], write_results: bool
) -> int:
    """After the workers: tidy the checkpoints, write the report, say what is left."""
    crashed = [c for c in codes if c not in (0, None, EXIT_STOPPED)]
    if final.done == final.total and not (final.running or final.waiting or final.failed_settings):
        clear_all(cfg.study_dir / "checkpoints")  # nothing left that could resume from one
    if write_results and (final.complete_runs or final.crashed_runs or final.gave_up):
        from sweep.report.write import results_line
        from sweep.report.write import write_results as write

        paths = write(study, cfg.results_dir)
        verdict = paths.get("verdict")
        if verdict is not None and Path(verdict).is_file():
            print(Path(verdict).read_text(encoding="utf-8").rstrip())
        print(results_line(cfg.study_dir, paths))
    code = 0
    if final.gave_up:
        more = (
            f" (and {len(final.gave_up) - 1} more: `sweep status`)"
            if len(final.gave_up) > 1
            else ""
        )
        print(
            f"{len(final.gave_up)} setting(s) given up, not run again: {final.gave_up[0]}{more}",
            file=sys.stderr,
        )
        code = 1
    if final.failed_settings:
        print(
            f"{final.failed_settings} setting(s) failed with an error (see above, or `sweep status`); "
            f"run the same command to retry them.",
            file=sys.stderr,
        )
        return 1
    if final.crashed_runs:
        print(
            f"{final.crashed_runs} run(s) crashed or timed out (runs.csv: outcome, failure_reason and the "
            f"log folder); run the same command to retry them.",
            file=sys.stderr,
        )
        return 1
    if final.done + len(final.gave_up) < final.total:
        why = f" (a worker exited with {crashed})" if crashed else ""
        print(
            f"{final.total - final.done} setting(s) not done{why}; run the same command to resume.",
            file=sys.stderr,
        )
        return 1
    if crashed:
        print(
            f"warning: a worker exited with {crashed}; the others finished its work",
            file=sys.stderr,
        )
    return code
