"""What fixes the meaning of a study's results: the keys a study refuses to see change.

Grid axes, seeds, detection thresholds and execution keys (`EXECUTION_KEYS`: study, workers,
device, packing, checkpointing, results_dir) may change between runs of the same study. With the
built-in trainer the task, model, optimizer, schedule, number of epochs and CPU threads
(`threads`) may not (except keys swept as grid axes). With a user's own training (a command or a
function) lrsweep's task, model, optimizer and schedule play no part: the trainer's own node (the
command line, or the function and the hash of its source code; less `EXTERNAL_EXECUTION` and
`EXTERNAL_ANALYSIS`, which may change), the number of epochs and `threads` (its runs'
OMP_NUM_THREADS) fix what results mean.
"""

from __future__ import annotations

import json
from typing import Any

from sweep.config.convert import flatten
from sweep.config.schema import Config
from sweep.config.start import start_part

COMPARABLE = ("task", "model", "optimizer", "schedule", "epochs", "threads")
# A user's training: its node (less how long a run may take and how it is stopped), epochs, and
# the threads its runs get (OMP_NUM_THREADS).
EXTERNAL_COMPARABLE = ("trainer", "epochs", "threads")
EXTERNAL_EXECUTION = ("trainer.timeout_minutes", "trainer.stop_grace_seconds")
# What the analysis reads of a user's training (which curve, the loss of knowing nothing): like
# the detection thresholds, a report may be rebuilt with other values.
EXTERNAL_ANALYSIS = ("trainer.metric", "trainer.chance_loss")
# Keys an earlier lrsweep did not record: a study made by it is not refused for lacking them.
ADDED_KEYS = ("threads",)
# Keys that say how and where to run, not what: `sweep worker` may give only these.
EXECUTION_KEYS = (
    "study",
    "workers",
    "device",
    "packing",
    "checkpoint_every",
    "checkpoint_minutes",
    "results_dir",
)


def trainer_name(comparable: dict[str, Any]) -> str:
    """The trainer a comparable part was made with (studies of the built-in trainer record none)."""
    return str(comparable.get("trainer.name", "builtin"))


def comparable_part(cfg: Config) -> dict[str, Any]:
    """The flattened keys that fix what a stored result means (swept keys excluded)."""
    d = cfg.to_dict()
    builtin = cfg.trainer.builtin
    flat = flatten({k: d[k] for k in (COMPARABLE if builtin else EXTERNAL_COMPARABLE)})
    for key in (*EXTERNAL_EXECUTION, *EXTERNAL_ANALYSIS):
        flat.pop(key, None)
    for path, _ in cfg.grid.extra:  # swept keys vary by design
        flat.pop(path, None)
    flat.update(start_part(cfg))  # the checkpoint every run starts from: its hash, its epoch
    return flat


def config_fingerprint(cfg: Config) -> str:
    return json.dumps(comparable_part(cfg), sort_keys=True)
