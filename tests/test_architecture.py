"""The floor plan holds: layers and no import cycles (import-linter), small modules, a report
command that never imports torch, and configs that ship with an installed package."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

MAX_MODULE_LINES = 500  # as `ruff format` writes them (it no longer lets a module pack lines)


def test_import_linter_contracts_hold():
    """The contracts in pyproject.toml (the layers, and the packages that need no torch, Keras or
    Lightning) hold: an upward import, or an import of torch where it is forbidden, fails here."""
    cmd = [
        sys.executable,
        "-c",
        "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run(
        cmd + ["--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "0 broken" in p.stdout


def _layers(lines: list[str]) -> list[set[str]]:
    """Each layer as the set of its packages (`|` joins independent siblings; parentheses mark a
    package that may not exist yet)."""
    return [{name.strip().strip("()") for name in line.split("|")} for line in lines]


def _contract_layers() -> list[set[str]]:
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in contracts["contracts"] if c["type"] == "layers"]
    return _layers(layers)


def _stated_layers(text: str, after: str) -> list[str]:
    """The lines of the first ```text block (or, in a docstring, the indented block) after the
    line `after`: one layer per line, top first."""
    lines = text[text.index(after) + len(after) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("sweep."))
    block = []
    for line in lines[start:]:
        if not line.strip().startswith(("sweep.", "(sweep.")):
            break
        block.append(line.strip())
    return block


def test_the_docs_and_the_package_docstring_state_the_layers_of_the_contract():
    """One floor plan: docs/architecture.md and `sweep`'s docstring list the layers of
    pyproject.toml's contract, top first, with the same siblings on each line."""
    import sweep

    contract = _contract_layers()
    docs = (ROOT / "docs" / "architecture.md").read_text()
    assert _layers(_stated_layers(docs, "## Packages by layer")) == contract
    assert _layers(_stated_layers(sweep.__doc__, "Layers, top first")) == contract
    # and every package of sweep/ stands on one layer
    packages = {
        f"sweep.{p.name}" for p in (ROOT / "sweep").iterdir() if (p / "__init__.py").is_file()
    }
    modules = {f"sweep.{p.stem}" for p in (ROOT / "sweep").glob("*.py") if p.stem[0] != "_"}
    placed = set().union(*contract)
    assert packages | modules <= placed


def _documented_columns(name: str) -> list[str]:
    """The columns docs/architecture.md ("Files") promises for `name`: the backticked words of its
    bullet after the first colon."""
    docs = (ROOT / "docs" / "architecture.md").read_text()
    bullet = docs[docs.index(f"- **`{name}`**") :]
    bullet = bullet[: min(i for i in (bullet.find("\n- ", 1), bullet.find("\n\n")) if i > 0)]
    return re.findall(r"`([a-z_0-9]+)`", bullet.split(":", 1)[1])


def test_the_files_have_the_columns_the_contract_promises():
    """runs.csv, summary.csv and curves.parquet, as the analysis builds them from two stored
    runs, have the grid axes first and every column docs/architecture.md lists."""
    import math

    from sweep.analysis.tables import build_tables
    from sweep.config import DetectConfig
    from sweep.core.records import EPOCH_COLUMNS

    def record(seed: int, acc: list[float]) -> dict:
        curves = {c: [0.5] * len(acc) for c in EPOCH_COLUMNS}
        curves.update(val_acc=acc, val_loss=[1.0 - a for a in acc], pred_top_frac=[0.2] * len(acc))
        nonfinite = len(acc) if math.isnan(acc[-1]) else None
        return {"seed": seed, "curves": curves, "nonfinite_epoch": nonfinite, "seconds": 0.1}

    setting = {"lr": 0.1, "clip": None, "batch_size": 32}
    runs = [(setting, record(0, [0.5, 0.9, 0.9]), 0), (setting, record(1, [0.5, math.nan]), 0)]
    tables = build_tables(runs, 0.1, DetectConfig(), axes=["lr", "clip", "batch_size"], n_val=400)
    for name, frame in (
        ("runs.csv", tables.runs),
        ("summary.csv", tables.summary),
        ("curves.parquet", tables.curves),
    ):
        columns = list(frame.columns)
        assert columns[:3] == ["lr", "clip", "batch_size"], (name, columns)
        documented = _documented_columns(name)
        assert len(documented) >= 10 and set(documented) - set(columns) == set(), name


def test_no_module_imports_itself_back():
    """No import cycle between any two modules, through any chain (also lazy imports inside
    functions): every `A imports B` with a chain from B back to A is reported."""
    import grimp

    graph = grimp.build_graph("sweep")
    cycles = sorted(
        {
            tuple(sorted((module, imported)))
            for module in graph.modules
            for imported in graph.find_modules_directly_imported_by(module)
            if imported != module and graph.chain_exists(importer=imported, imported=module)
        }
    )
    assert cycles == []


def test_every_package_is_listed_for_the_wheel():
    """pyproject.toml lists the packages explicitly (configs/ is mapped to sweep.conf): a new
    subpackage missing from the list would be left out of an installed lrsweep."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "sweep").rglob("__init__.py")
    }
    assert found - listed == set()


def test_every_module_is_small():
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines())
        for p in (ROOT / "sweep").rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def _study_with_one_run(tmp_path: Path) -> str:
    """An SQLite storage holding study 'arch' with one completed setting of one stored run."""
    import optuna
    from optuna.trial import TrialState

    from sweep.config import load_config
    from sweep.core.records import RunRecord
    from sweep.store import (
        enqueue,
        load_study_runs,
        open_or_create_study,
        open_storage,
        plan_work,
        pop_trial,
        store_results,
    )

    url = f"sqlite:///{tmp_path / 'lrsweep.db'}"
    cfg = load_config(
        [
            "grid.lr=[0.1]",
            "grid.clip=[null]",
            "seeds=1",
            "epochs=2",
            "study.name=arch",
            f"study.storage={url}",
        ]
    )
    storage = open_storage(url)
    study = open_or_create_study(
        storage,
        cfg,
        {
            "name": "digits",
            "kind": "classification",
            "chance": 0.1,
            "n_val": 450,
            "fingerprint": "x",
        },
    )
    enqueue(study, plan_work(cfg, study.get_trials()))
    trial = pop_trial(study)
    record = RunRecord(seed=0)
    for acc in (0.5, 0.9):
        record.append(
            {
                "train_loss": 1.0,
                "val_loss": 1.0 - acc,
                "val_acc": acc,
                "grad_norm_mean": 1.0,
                "grad_norm_max": 2.0,
                "grad_norm_p90": 1.5,
                "clip_fraction": 0.0,
                "pred_top_frac": 0.2,
                "epoch_lr": 0.1,
                "val_loss_sd": 0.3,
            }
        )
    store_results(study, trial, [record], {"mean_best_acc": 0.9, "collapse_rate": 0.0})
    stored = optuna.load_study(study_name="arch", storage=storage)
    assert [(t.state, t.values) for t in stored.trials] == [(TrialState.COMPLETE, [0.9, 0.0])]
    ((setting, run, _),) = load_study_runs(stored)  # the one run, read back as the report reads it
    assert setting["lr"] == 0.1 and run["seed"] == 0
    assert list(run["curves"]["val_acc"]) == pytest.approx([0.5, 0.9], rel=1e-6)  # float32
    return url


@pytest.mark.slow
def test_sweep_report_imports_no_torch(tmp_path):
    url = _study_with_one_run(tmp_path)
    script = (
        "import sys\n"
        "from sweep.cli import execute\n"
        f"code = execute(['report', 'study.name=arch', 'study.storage={url}', 'results_dir={tmp_path / 'results'}'])\n"
        "assert code == 0, code\n"
        "print('torch loaded:', 'torch' in sys.modules)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "torch loaded: False" in p.stdout
    assert (tmp_path / "results" / "arch" / "report.html").is_file()


@pytest.mark.slow
@pytest.mark.xdist_group("installed-lrsweep")  # one worker builds the wheel and its venv
def test_a_wheel_installed_in_a_fresh_venv_runs_from_any_folder(tmp_path, installed_lrsweep):
    """`pip install .` (not -e), then `sweep run --cfg job` and a tiny sweep in an empty folder:
    lrsweep comes from the wheel only (the dependencies from the running environment)."""
    bin_dir = installed_lrsweep
    work = tmp_path / "anywhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import sweep, sweep.conf; print(sweep.__file__)"],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert str(bin_dir.parent) in where.stdout, (
        where.stdout + where.stderr
    )  # the wheel's copy, not the repository
    job = subprocess.run(
        [str(bin_dir / "sweep"), "run", "--cfg", "job", "task=adding"],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert job.returncode == 0, job.stderr[-2000:]
    assert "name: adding" in job.stdout and "hidden_size: 64" in job.stdout
    tiny = [
        "model.hidden_size=4",
        "model.layers=1",
        "epochs=1",
        "seeds=1",
        "grid.lr=[0.1]",
        "grid.clip=[null]",
        "grid.batch_size=[256]",
        "workers=1",
    ]
    run = subprocess.run(
        [str(bin_dir / "sweep"), "run", *tiny],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (work / "results" / "digits-lstm-sgd" / "report.html").is_file()


def test_the_code_is_formatted_and_linted():
    """`ruff format --check` and `ruff check` pass (the rules live in pyproject.toml)."""
    for args in (["format", "--check", "."], ["check", "."]):
        p = subprocess.run(
            [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True
        )
        assert p.returncode == 0, f"ruff {' '.join(args)}:\n{p.stdout[-3000:]}{p.stderr[-1000:]}"
