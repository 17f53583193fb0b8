"""`sweep find` and `grid.lr=auto`: learning-rate range tests that propose the sweep's grid.

Usage::

    result = find_lrs(cfg, task, device)         # find.seeds runs per clip value
    store_find(study, result)                    # kept in the study (the report draws it)
    result.proposed                              # e.g. [0.01, 0.03, 0.1, 0.3, 1.0]
    result.override()                            # "grid.lr='[0.01,0.03,0.1,0.3,1]'"

Each run uses the sweep's model, optimizer and first batch size, with the learning rate ramped
exponentially from find.lr_min to find.lr_max over find.steps steps and stopped at divergence.
The proposal spans about find.decades decades below the divergence point (per clip value the
median over seeds; the largest over clip values) up to it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sweep.config import Config
from sweep.core.errors import UserError
from sweep.core.records import decode_floats, encode_floats
from sweep.core.setting import value_label
from sweep.store.studies import ATTR_FIND
from sweep.tasks import TaskData
from sweep.training import SettingSpec
from sweep.training.range_test import RangeTest, lr_range_test, propose_grid


@dataclass
class FindResult:
    runs: list[RangeTest]
    proposed: list[float]
    settings: dict[str, Any]  # lr_min, lr_max, steps, batch_size, diverge

    def diverged_by_clip(self) -> dict[Any, float]:
        """Per clip value, the median divergence lr of its seeds (a run that never diverged
        counts the last lr it reached)."""
        out: dict[Any, list[float]] = {}
        for r in self.runs:
            out.setdefault(r.clip, []).append(
                r.diverged_lr or (r.lrs[-1] if r.lrs else self.settings["lr_max"])
            )
        return {clip: float(statistics.median(v)) for clip, v in out.items()}

    def override(self) -> str:
        return "grid.lr='[" + ",".join(value_label(v) for v in self.proposed) + "]'"

    def summary(self) -> str:
        """What the range tests found, in two lines."""
        diverged = self.diverged_by_clip()
        parts = []
        for clip, lr in diverged.items():
            which = "no clipping" if clip is None else f"clip {value_label(clip)}"
            runs = [r for r in self.runs if r.clip == clip]
            if all(r.diverged_lr is None for r in runs):
                parts.append(f"no divergence up to lr {value_label(lr)} ({which})")
            else:
                parts.append(f"divergence at lr {lr:.2g} ({which}, median of {len(runs)} seeds)")
        steep = [r.steepest_lr for r in self.runs if r.steepest_lr]
        falls = f"; the loss falls fastest near lr {statistics.median(steep):.2g}" if steep else ""
        return (
            f"range test ({len(self.runs)} runs, lr {value_label(self.settings['lr_min'])} to "
            f"{value_label(self.settings['lr_max'])} over {self.settings['steps']} steps): {'; '.join(parts)}"
            f"{falls}.\nproposed grid (about {self.settings['decades']:g} decades below the divergence point): "
            f"{self.override()}"
        )

    def to_dict(self) -> dict[str, Any]:
        runs = []
        for r in self.runs:
            data = r.to_dict()
            for key in ("lrs", "losses", "smoothed"):
                data[key] = encode_floats(data[key])
            runs.append(data)
        return {"settings": self.settings, "proposed": self.proposed, "runs": runs}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FindResult:
        runs = []
        for r in data["runs"]:
            arrays = {k: decode_floats(r[k]).tolist() for k in ("lrs", "losses", "smoothed")}
            runs.append(
                RangeTest(
                    seed=r["seed"],
                    clip=r["clip"],
                    diverged_lr=r["diverged_lr"],
                    steepest_lr=r["steepest_lr"],
                    **arrays,
                )
            )
        return cls(runs=runs, proposed=list(data["proposed"]), settings=dict(data["settings"]))


def find_lrs(cfg: Config, task: Any, device: torch.device, log: Any = None) -> FindResult:
    """Range tests for every clip value of the grid, find.seeds each; the proposed grid."""
    f = cfg.find
    first = {
        "lr": f.lr_min,
        "clip": None,
        "batch_size": cfg.grid.batch_size[0],
        **{path: values[0] for path, values in cfg.grid.extra},
    }
    spec = SettingSpec.build(cfg, first, list(range(f.seeds)))
    runs = []
    for clip in cfg.grid.clip:
        for seed in range(f.seeds):
            runs.append(
                lr_range_test(
                    task,
                    spec,
                    seed,
                    device,
                    clip=clip,
                    lr_min=f.lr_min,
                    lr_max=f.lr_max,
                    steps=f.steps,
                    diverge=f.diverge,
                )
            )
            if log:
                r = runs[-1]
                log(
                    f"  range test seed {seed}, clip {value_label(clip)}: "
                    + (f"diverged at lr {r.diverged_lr:.3g}" if r.diverged_lr else "no divergence")
                    + f" after {len(r.lrs)} steps"
                )
    settings = {
        "lr_min": f.lr_min,
        "lr_max": f.lr_max,
        "steps": f.steps,
        "batch_size": spec.batch_size,
        "diverge": f.diverge,
        "decades": f.decades,
        "clips": list(cfg.grid.clip),
    }
    result = FindResult(runs=runs, proposed=[], settings=settings)
    result.proposed = propose_grid(
        list(result.diverged_by_clip().values()), [r.steepest_lr for r in runs], f.decades
    )
    return result


def stored_find(study: Any, cfg: Config) -> FindResult | None:
    """The range tests the study holds, if they were run with these settings and clip values."""
    data = study.user_attrs.get(ATTR_FIND)
    if not data:
        return None
    f = cfg.find
    same = (
        data["settings"].get("clips") == list(cfg.grid.clip)
        and all(
            data["settings"].get(k) == getattr(f, k)
            for k in ("lr_min", "lr_max", "steps", "diverge")
        )
        and len(data["runs"]) == f.seeds * len(cfg.grid.clip)
    )
    return FindResult.from_dict(data) if same else None


def store_find(study: Any, result: FindResult) -> None:
    study.set_user_attr(ATTR_FIND, result.to_dict())


def resolve_grid(cfg: Config, result: FindResult) -> Config:
    """`cfg` with grid.lr=auto replaced by the learning rates `result` proposes."""
    import dataclasses

    grid = dataclasses.replace(cfg.grid, lr=tuple(result.proposed), lr_auto=False)
    return dataclasses.replace(cfg, grid=grid)


def auto_grid(cfg: Config, task: TaskData, device: str) -> tuple[Config, Any | None]:
    """`grid.lr=auto`: the config with the learning rates the study's range tests propose (run
    now when it has none), and the new result to store once the study is prepared."""
    from sweep.training.accelerator import configure_device

    study = _stored_study(cfg)
    result = stored_find(study, cfg) if study is not None else None
    fresh = result is None
    if fresh:
        print("grid.lr=auto: running the learning-rate range test first", flush=True)
        configure_device(torch.device(device))
        result = find_lrs(cfg, task, torch.device(device), log=lambda m: print(m, flush=True))
    print(result.summary(), flush=True)
    return resolve_grid(cfg, result), (result if fresh else None)


def _stored_study(cfg: Config) -> Any | None:
    """The study if the storage already holds it; None otherwise. A default SQLite file that does
    not exist yet is not created: `grid.lr=auto` writes nothing before the sweep is prepared."""
    from sweep.launch.preparation import open_study_storage
    from sweep.store.studies import load_study, study_names

    url = cfg.storage_url()
    if url.startswith("sqlite") and not Path(url.split(":///", 1)[-1]).exists():
        return None
    storage = open_study_storage(cfg)
    return load_study(storage, cfg.study.name) if cfg.study.name in study_names(storage) else None


def find_command(cfg: Config) -> int:
    """`sweep find`: range tests for the study's model and data, stored in the study, drawn in
    results/<study>/figures/find.png, and the proposed grid printed as an override."""
    from sweep.core.devices import device_for_worker
    from sweep.launch.preparation import checked_task, open_study_storage, task_info
    from sweep.report.find_figure import write_find_figure
    from sweep.store.studies import open_or_create_study
    from sweep.training.accelerator import configure_device

    if not cfg.trainer.builtin:
        raise UserError(
            f"sweep find: the range test trains lrsweep's own model, not your training "
            f"(trainer={cfg.trainer.name}); give `sweep run` a grid.lr list instead"
        )
    n_gpu = torch.cuda.device_count() if cfg.device != "cpu" else 0
    task = checked_task(cfg)
    study = open_or_create_study(
        open_study_storage(cfg),
        cfg,
        task_info(task, getattr(cfg.task, "normalize", None)),
        record_grid=False,
    )
    device = torch.device(device_for_worker(cfg.device, n_gpu, 0))
    configure_device(device)
    print(
        f"lrsweep find: study {cfg.study.name!r}, task {task.name}, model {cfg.model.name}, optimizer "
        f"{cfg.optimizer.name}, batch size {cfg.grid.batch_size[0]}",
        flush=True,
    )
    result = find_lrs(cfg, task, device, log=lambda m: print(m, flush=True))
    store_find(study, result)
    path = write_find_figure(result.to_dict(), cfg.study_dir)
    print(result.summary())
    print(
        f"figure: {path}\nnext: sweep run {result.override()} (or grid.lr=auto, which reuses these range tests)"
    )
    return 0
