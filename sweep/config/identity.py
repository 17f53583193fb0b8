"""What fixes the meaning of a study's results: the keys a study refuses to see change.

Grid axes, seeds, detection thresholds and execution keys (workers, device, packing,
checkpointing, results_dir) may change between runs of the same study; the task, model,
optimizer, schedule and number of epochs may not (except keys swept as grid axes).
"""

from __future__ import annotations

import json
from typing import Any

from sweep.config.convert import flatten
from sweep.config.schema import Config

COMPARABLE = ("task", "model", "optimizer", "schedule", "epochs")
# Keys that say how and where to run, not what: `sweep worker` may give only these.
EXECUTION_KEYS = ("study", "workers", "device", "packing", "checkpoint_every", "checkpoint_minutes", "results_dir")


def comparable_part(cfg: Config) -> dict[str, Any]:
    """The flattened keys that fix what a stored result means (swept keys excluded)."""
    d = cfg.to_dict()
    flat = flatten({k: d[k] for k in COMPARABLE})
    for path, _ in cfg.grid.extra:  # swept keys vary by design
        flat.pop(path, None)
    return flat


def config_fingerprint(cfg: Config) -> str:
    return json.dumps(comparable_part(cfg), sort_keys=True)
