"""A worker: claims queued trials from the study, trains their seeds, stores the records.

Started by `sweep run` / `sweep worker` as a child process (`workers` of them: auto is one per
GPU, else one per CPU core), forked from the launcher or as a fresh `python -m sweep.launch.worker`
(sweep.launch.children says which), configured through the environment or by one JSON line on
stdin. A notebook's function object runs this loop in-process instead (`run_worker`). A worker

- claims a WAITING trial atomically, the longest first (most optimizer steps: seeds / batch
  size, then queue order), writes its identity (host, pid, start time) on it and keeps a
  heartbeat while training, so a dead worker's trial can be reclaimed;
- with lrsweep's own loop, checkpoints every `checkpoint_every` epochs / `checkpoint_minutes`
  minutes (a command or a function checkpoints itself, into its `{checkpoint_dir}`);
- on SIGTERM/SIGINT stops its trial (lrsweep's loop at the end of the epoch, after a checkpoint;
  a command by stopping its process group; a function at its next `report()`), releases it
  (fails it and queues a copy, which resumes from the checkpoint) and exits with status 143; a
  second signal exits at once;
- stops with status 2 (the one-line message on stderr) when a user's training shows a mistake of
  the user's, such as a metrics file that never appears;
- when the queue is empty but trials still run elsewhere, waits and reclaims them if their
  workers die; exits 0 once the study has nothing left to do.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback
from typing import Any

import torch

from sweep.analysis.metric import asked_metric
from sweep.analysis.tables import trial_summary
from sweep.config import Config, config_from_dict
from sweep.core.devices import device_for_worker
from sweep.core.errors import StopRequested, UserError
from sweep.core.records import decode_record, encode_record
from sweep.core.redact import redact_secrets
from sweep.store.queue import fail_and_requeue, mark_failed, others_running, pop_trial
from sweep.store.results import record_progress, store_results
from sweep.store.storage import open_storage
from sweep.store.studies import ATTR_TASK, load_study
from sweep.store.workers import Heartbeat, claim_for, reclaim_orphans, this_worker
from sweep.tasks import build_task
from sweep.tasks.data import load_task
from sweep.trainers import make_trainer
from sweep.training.accelerator import configure_device

ENV_CONFIG = "LRSWEEP_WORKER_CONFIG"
ENV_INDEX = "LRSWEEP_WORKER_INDEX"
ENV_THREADS = "LRSWEEP_THREADS"
ENV_PARENT = "LRSWEEP_PARENT_PID"
ENV_DEVICE = "LRSWEEP_WORKER_DEVICE"  # the device the launcher planned for this worker
ENV_TASK = "LRSWEEP_TASK_CACHE"  # the task data the launcher built and saved
EXIT_STOPPED = 143
# a user's training broke a rule only a run can show (its metrics): the sweep stops
EXIT_USER_ERROR = 2
IDLE_POLL_SECONDS = 0.5  # an idle worker watches trials running elsewhere this often


class StopFlag:
    """Set by SIGTERM/SIGINT; a second signal exits at once (the trial is reclaimed later).

    Launched workers ignore SIGINT (the launcher forwards one SIGTERM per Ctrl-C)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.event.is_set():
            os._exit(EXIT_STOPPED)
        self.event.set()

    def __call__(self) -> bool:
        return self.event.is_set()


def worker_device(cfg: Config, index: int) -> torch.device:
    """The device of local worker `index` (see `sweep.devices.device_for_worker`): GPUs round
    robin for `auto`/`cuda`, the named one for `cuda:N`, always with an explicit index."""
    n_cuda = torch.cuda.device_count() if cfg.device != "cpu" else 0
    return torch.device(device_for_worker(cfg.device, n_cuda, index))


def run_worker(
    cfg: Config,
    index: int = 0,
    stop: StopFlag | None = None,
    log=print,
    device: str | None = None,
    function: Any = None,
) -> int:
    """Work on the study until nothing is left (0), a stop was requested (143) or a user's training
    showed a mistake of the user's (2, the one-line message printed on stderr).

    `device` is the one the launcher planned for this worker (default: `worker_device`);
    `function` a training function given as an object (the Python API), not by its path."""
    from optuna.exceptions import UpdateFinishedTrialError

    stop = stop or StopFlag()
    device = torch.device(device) if device else worker_device(cfg, index)
    storage = open_storage(cfg.storage_url(), cfg.study.heartbeat_seconds, cfg.study.grace_seconds)
    study = load_study(storage, cfg.study.name)
    task = None
    if cfg.trainer.builtin:
        configure_device(device)  # (a user's training sets up its device itself)
        cached = load_task(os.environ[ENV_TASK]) if os.environ.get(ENV_TASK) else None
        task = (cached or build_task(cfg.task)).to(device)
        chance, n_val = (
            task.chance(),
            int(task.x_val.shape[0]),
        )  # accuracies are proportions of these
        chance_loss = task.chance_loss()
    else:
        info = study.user_attrs.get(ATTR_TASK) or {}
        chance, n_val = (
            info.get("chance"),
            info.get("n_val"),
        )  # None: each run's own log states them
        chance_loss = info.get("chance_loss")
    me = this_worker()
    current: dict[str, Any] = {}
    trainer = make_trainer(
        cfg,
        device,
        task=task,
        function=function,
        on_epoch=lambda seed, epoch: record_progress(study, current.get("trial"), seed, epoch),
    )
    while not stop():
        reclaim_orphans(study, cfg.study.grace_seconds)
        trial = pop_trial(study, me)
        if trial is None:
            if others_running(study):
                stop.event.wait(IDLE_POLL_SECONDS)
                continue
            return 0
        claim_for(study, trial, me)
        current["trial"] = trial
        setting, seeds = trial.user_attrs["setting"], list(trial.user_attrs["seeds"])
        try:
            with Heartbeat(study, trial, cfg.study.heartbeat_seconds):
                records = trainer.train(setting, seeds, should_stop=stop)
        except StopRequested:
            # Queue a copy, which resumes from the checkpoint just written.
            fail_and_requeue(study, trial, "released: its worker was asked to stop")
            return EXIT_STOPPED
        except KeyboardInterrupt:  # Ctrl-C in a notebook running this loop in-process
            fail_and_requeue(study, trial, "released: interrupted")
            raise
        except UserError as e:  # e.g. a metrics file that never appeared: no result is stored
            fail_and_requeue(study, trial, f"released: {e}")
            print(f"error: {redact_secrets(str(e))}", file=sys.stderr, flush=True)
            return EXIT_USER_ERROR
        except Exception as e:  # a bug or resource error in one setting must not stop the sweep
            detail = redact_secrets(f"{type(e).__name__}: {e}")
            log(f"worker {index}: setting {setting} failed: {detail}", file=sys.stderr)
            print(redact_secrets(traceback.format_exc()), file=sys.stderr)
            mark_failed(study, trial, detail[:2000])
            continue
        decoded = [decode_record(encode_record(r)) for r in records]  # score what is stored
        summary = trial_summary(decoded, chance, cfg.detect, n_val, asked_metric(cfg), chance_loss)
        try:
            store_results(study, trial, records, summary)
        except UpdateFinishedTrialError:
            # Its heartbeat went stale (e.g. this machine was suspended) and another worker
            # reclaimed the trial; that worker's result will be stored instead.
            log(
                f"worker {index}: trial {trial.number} was reclaimed meanwhile; result discarded",
                file=sys.stderr,
            )
            continue
        trainer.clear(setting, seeds)
    return EXIT_STOPPED


def warm_up() -> None:
    """Pay one-time costs before the first trial: the first optimizer built in a process imports
    torch._dynamo (about a second). A worker started as a fresh interpreter does it while the
    launcher prepares the study; a launcher does it once before forking its workers."""
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


def main() -> None:
    """Entry point of a worker child process: configured through the environment, or by one
    JSON line on stdin from the launcher that started it ahead of time."""
    stop = StopFlag()
    stop.install()
    if os.environ.get(ENV_PARENT) and os.getppid() != int(os.environ[ENV_PARENT]):
        sys.exit(EXIT_STOPPED)  # the launcher died before this process started
    threads = int(os.environ.get(ENV_THREADS, "0"))
    if threads > 0:
        torch.set_num_threads(threads)
    if ENV_CONFIG in os.environ:
        cfg = config_from_dict(json.loads(os.environ[ENV_CONFIG]))
    else:  # started early by a launcher: wait for its go (a config), or the end of input
        warm_up()
        line = sys.stdin.readline()
        if not line.strip():
            sys.exit(0)
        message = json.loads(line)
        cfg = config_from_dict(message["config"])
        os.environ[ENV_TASK] = message["task_cache"]
    index = int(os.environ.get(ENV_INDEX, "0"))
    try:
        code = run_worker(cfg, index, stop, log=print, device=os.environ.get(ENV_DEVICE))
    except UserError as e:  # the function trainer's code changed since the launcher checked it, ...
        print(f"error: {redact_secrets(str(e))}", file=sys.stderr, flush=True)
        code = EXIT_USER_ERROR
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # everything is committed to the storage; skip the slow interpreter teardown


if __name__ == "__main__":
    main()
