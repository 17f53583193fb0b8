"""Schemas of the `task` config group: one dataclass per built-in task, each with its rules.

The YAML files under configs/task/ extend these (Hydra's structured-config pattern): every
default lives here, once, with its meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sweep.config.rules import Checked


@dataclass
class TaskConfig(Checked):
    """What every task has: a name and the seed that fixes its data (split or generated)."""

    name: str = "?"
    data_seed: int = 0  # fixes the train/validation split or the generated sequences

    def check(self, prefix: str) -> None:
        pass


@dataclass
class SplitTask(TaskConfig):
    """A data set split into training and validation by `val_fraction`."""

    val_fraction: float = 0.2  # share of sequences held out for validation (stratified by class)

    def check(self, prefix: str) -> None:
        self.require(0 < self.val_fraction < 1, prefix, "val_fraction", "must be in (0, 1)")


@dataclass
class GeneratedTask(TaskConfig):
    """Sequences generated from `data_seed`: how many, and how long."""

    length: int = 50  # steps per sequence (requested length L)
    n_train: int = 10000  # training sequences
    n_val: int = 2000  # validation sequences

    def check(self, prefix: str) -> None:
        self.require(self.length >= 10, prefix, "length", "must be >= 10 steps")
        for name in ("n_train", "n_val"):
            self.require(getattr(self, name) >= 2, prefix, name, "must be >= 2")


def column_names(value: Any) -> list[str]:
    """Column names from a list or a comma-separated text (empty names dropped)."""
    parts = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(p).strip() for p in parts if str(p).strip()]


def check_tolerance(task: Checked, prefix: str) -> None:
    task.require(task.tolerance > 0, prefix, "tolerance", "must be > 0")  # type: ignore[attr-defined]


@dataclass
class DigitsTask(SplitTask):
    """scikit-learn's 8x8 handwritten digits, read row by row (8 steps x 8 features, 10 classes)."""

    name: str = "digits"
    val_fraction: float = 0.25


@dataclass
class AddingTask(GeneratedTask):
    """Pascanu et al. (2013) adding problem (regression, MSE, correct when sq. error < tolerance)."""

    name: str = "adding"
    tolerance: float = 0.04  # squared error under which a prediction counts as correct

    def check(self, prefix: str) -> None:
        super().check(prefix)
        check_tolerance(self, prefix)


@dataclass
class TemporalOrderTask(GeneratedTask):
    """Pascanu et al. (2013) temporal order problem (6 one-hot symbols, 4 classes)."""

    name: str = "temporal_order"


@dataclass
class EchoTask(GeneratedTask):
    """Delayed echo, a per-step task: at every step output the symbol seen `delay` steps earlier."""

    name: str = "echo"
    length: int = 20
    n_train: int = 2000
    n_val: int = 500
    delay: int = 3  # how many steps back the echoed symbol lies (1 <= delay < length)
    symbols: int = 4  # distinct input symbols (classes: symbols + 1)

    def check(self, prefix: str) -> None:
        super().check(prefix)
        self.require(
            1 <= self.delay < self.length,
            prefix,
            "delay",
            f"must be in [1, task.length={self.length})",
        )
        self.require(self.symbols >= 2, prefix, "symbols", "must be >= 2")


@dataclass
class VectorSumTask(GeneratedTask):
    """Vector regression: a fixed random projection of the sequence's scaled sum (MSE, tolerance)."""

    name: str = "vector_sum"
    length: int = 20
    n_train: int = 2000
    n_val: int = 500
    features: int = 4  # input channels per step
    dim: int = 8  # size D of the target vector
    # mean squared error (over D) under which a prediction counts as correct
    tolerance: float = 0.04

    def check(self, prefix: str) -> None:
        super().check(prefix)
        for name in ("features", "dim"):
            self.require(getattr(self, name) >= 1, prefix, name, "must be >= 1")
        check_tolerance(self, prefix)


@dataclass
class FileTask(SplitTask):
    """The user's sequences from an .npz file or a long-format .csv/.parquet table."""

    name: str = "file"
    path: str | None = None  # the data file (.npz, .csv or .parquet); required
    # a separate validation file in the same format (null: split off val_fraction)
    val_path: str | None = None
    kind: str = "auto"  # auto: integer/string labels -> classification, float targets -> regression
    per_step: bool | None = None  # targets at every step? null: inferred from the file
    # regression: correct when the squared error (mean over D) is below this
    tolerance: float = 0.04
    normalize: bool = True  # standardise each feature with training mean/std over valid steps
    seq_column: str = "seq"  # long format: the column naming each row's sequence
    step_column: str = "step"  # long format: the column ordering the rows of a sequence
    # Long format: the target column(s) (several: a vector) and the feature columns (null: every
    # other column), each a list [f1,f2] or one comma-separated text f1,f2.
    label_columns: Any = "label"
    feature_columns: Any = None

    def check(self, prefix: str) -> None:
        super().check(prefix)
        check_tolerance(self, prefix)
        self.require(
            bool(self.path),
            prefix,
            "path",
            "must name a data file",
            "e.g. task=file task.path=/data/seqs.npz",
        )
        self.require(
            self.val_path is None or bool(self.val_path),
            prefix,
            "val_path",
            "must name a file, or be null to split off task.val_fraction",
        )
        self.require(
            self.kind in ("auto", "classification", "regression"),
            prefix,
            "kind",
            "must be auto, classification or regression",
        )
        for name in ("label_columns", "feature_columns"):
            value = getattr(self, name)
            if value is None and name == "feature_columns":
                continue
            ok = isinstance(value, str) or (
                isinstance(value, (list, tuple))
                and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value)
            )
            self.require(
                ok,
                prefix,
                name,
                "must be column names, a list [a,b] or a text a,b",
                f"e.g. {prefix}.{name}=[f1,f2]",
            )
            setattr(
                self, name, ",".join(column_names(value))
            )  # one spelling: the study compares it
        self.require(
            bool(self.label_columns.strip()),
            prefix,
            "label_columns",
            "must name at least one column",
        )


@dataclass
class TextTask(TaskConfig):
    """Text classification from a folder in the IMDB reviews layout (tokens -> embedding)."""

    name: str = "text"
    path: str | None = None  # the folder (e.g. the unpacked aclImdb/); required
    vocab_size: int = 10000  # ids in the vocabulary, including 0 = padding and 1 = unknown word
    max_len: int = 200  # keep the first max_len tokens of each review
    max_per_class: int | None = None  # read at most this many files per class and split (null: all)

    def check(self, prefix: str) -> None:
        self.require(
            bool(self.path),
            prefix,
            "path",
            "must name a folder in the IMDB layout",
            "e.g. task=text task.path=/data/aclImdb",
        )
        self.require(
            self.vocab_size >= 3,
            prefix,
            "vocab_size",
            "must be >= 3 (ids 0 and 1 are padding and unknown words)",
        )
        self.require(self.max_len >= 1, prefix, "max_len", "must be >= 1 token")
        self.require(
            self.max_per_class is None or self.max_per_class >= 1,
            prefix,
            "max_per_class",
            "must be >= 1 or null (all files)",
        )


TASKS: dict[str, type] = {
    "digits": DigitsTask,
    "adding": AddingTask,
    "temporal_order": TemporalOrderTask,
    "echo": EchoTask,
    "vector_sum": VectorSumTask,
    "file": FileTask,
    "text": TextTask,
}
