"""Users' own code in the config: a model or a data loader named by Hydra's `_target_`.

A `model` or `task` node with a `_target_` key is the user's: lrsweep instantiates the target
(hydra.utils.instantiate) with the node's other keys. The model node passes every key but
`_target_` and `name` to the constructor; the task node keeps lrsweep's own data options
(`DATA_OPTIONS`: split, seed, how targets are read) and passes every other key to the loader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweep.config.rules import Checked, rule_error
from sweep.config.tasks import FileTask

TARGET = "_target_"
# The file task's options that also apply to data from a loader; they are lrsweep's, not the
# loader's arguments.
DATA_OPTIONS = ("val_fraction", "data_seed", "kind", "per_step", "normalize", "tolerance")


def is_target(node: Any) -> bool:
    return isinstance(node, dict) and TARGET in node


def target_label(target: str) -> str:
    """The last part of a dotted path: mynets.Seq2Seq -> Seq2Seq (names studies and reports)."""
    return str(target).rsplit(".", 1)[-1]


def check_target(node: dict[str, Any], key: str) -> str:
    target = node.get(TARGET)
    if not isinstance(target, str) or not target.strip() or " " in target:
        raise rule_error(
            key,
            "must name an importable class or function as a dotted path",
            target,
            "e.g. _target_: mynets.Seq2Seq (a module mynets.py importable from where you run sweep)",
        )
    return target


@dataclass
class TargetModel(Checked):
    """A user's model: `target` (dotted path of a torch.nn.Module) and its keyword arguments."""

    target: str
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_node(cls, node: dict[str, Any]) -> TargetModel:
        target = check_target(node, f"model.{TARGET}")
        kwargs = {k: v for k, v in node.items() if k not in (TARGET, "name")}
        return cls(target=target, name=str(node.get("name") or target_label(target)), kwargs=kwargs)

    def to_node(self) -> dict[str, Any]:
        return {TARGET: self.target, "name": self.name, **self.kwargs}

    def check(self, prefix: str) -> None:
        pass


@dataclass
class TargetTask(FileTask):
    """A user's data loader: `target` called with `kwargs` returns the arrays of an .npz task;
    lrsweep's data options (split, seed, target kind, normalisation, tolerance) are the file task's."""

    target: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_node(cls, node: dict[str, Any], convert: Any) -> TargetTask:
        """`convert(schema, options)` types lrsweep's options (OmegaConf, as for every node)."""
        target = check_target(node, f"task.{TARGET}")
        options = {k: v for k, v in node.items() if k in DATA_OPTIONS}
        kwargs = {k: v for k, v in node.items() if k not in (TARGET, "name", *DATA_OPTIONS)}
        typed = convert(FileTask, options)
        fields = {k: getattr(typed, k) for k in DATA_OPTIONS}
        return cls(
            name=str(node.get("name") or target_label(target)),
            target=target,
            kwargs=kwargs,
            **fields,
        )

    def to_node(self) -> dict[str, Any]:
        return {
            TARGET: self.target,
            "name": self.name,
            **{k: getattr(self, k) for k in DATA_OPTIONS},
            **self.kwargs,
        }

    def check(self, prefix: str) -> None:
        self.require(0 < self.val_fraction < 1, prefix, "val_fraction", "must be in (0, 1)")
        self.require(self.tolerance > 0, prefix, "tolerance", "must be > 0")
        self.require(
            self.kind in ("auto", "classification", "regression"),
            prefix,
            "kind",
            "must be auto, classification or regression",
        )
