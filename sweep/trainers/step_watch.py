"""Per-step signals of a user's PyTorch training, kept on the device and read once per epoch.

Usage (GradientMonitor composes both)::

    updates = UpdateTracker(groups, optimizer)   # optimizer step hooks: ||w_after - w_before|| / ||w_before||
    watch = NonfiniteWatch(model)                # forward hooks, device values only
    watch.gradients(params, per_param_norms)     # each step, with the norms the clipping computed
    updates.epoch()                              # {"update_ratio": t, "update_ratio/<group>": t, ...}
    watch.settle(); watch.origin_index           # 0-d device tensor: the first module that went NaN/inf

`UpdateTracker` sees every optimizer step (torch's `register_step_pre_hook` / `_post_hook`): it
copies the weights before the step and keeps the per-parameter norms of the weights and of the
step's difference; the ratios are formed from them once per epoch, and the last step's
difference stays in its buffers for crit_lr. `NonfiniteWatch` keeps one value per submodule
output and the gradient norms per step, in the order they happened, and finds the first
non-finite one when it settles. Nothing here reads a value on the host.
"""

from __future__ import annotations

import torch
from torch import nn

from sweep.core.signal_rules import UPDATE_RATIO
from sweep.training.gradients import ParamGroups


class UpdateTracker:
    """The update/weight ratio of every optimizer step; the ratios are formed once per epoch."""

    def __init__(self, groups: ParamGroups, optimizer: torch.optim.Optimizer) -> None:
        self.groups = groups
        self.params = groups.params
        self._before = [torch.empty_like(p) for p in self.params]
        self._before_sq: torch.Tensor | None = None
        self._steps: list[torch.Tensor] = []  # per step: [2, P] squared norms (diff, before)
        self.has_step = False  # the buffers hold a step's difference (after the first step)
        self.lr: float | None = None  # the first param group's lr at the last step
        self._handles = [
            optimizer.register_step_pre_hook(self._pre),
            optimizer.register_step_post_hook(self._post),
        ]

    @torch.no_grad()
    def _pre(self, optimizer, args, kwargs) -> None:
        torch._foreach_copy_(self._before, self.params)
        self._before_sq = torch.stack(torch._foreach_norm(self._before))

    @torch.no_grad()
    def _post(self, optimizer, args, kwargs) -> None:
        if self._before_sq is None:
            return
        # the buffers become w_before - w_after: minus this step's update (kept for crit_lr)
        torch._foreach_sub_(self._before, self.params)
        diff = torch.stack(torch._foreach_norm(self._before))
        self._steps.append(torch.stack([diff, self._before_sq]))
        self._before_sq = None
        self.has_step = True
        self.lr = optimizer.param_groups[0]["lr"]

    def last_update(self) -> list[torch.Tensor] | None:
        """w_after - w_before of the last optimizer step, per parameter (None before any)."""
        return torch._foreach_neg(self._before) if self.has_step else None

    def epoch(self) -> dict[str, torch.Tensor]:
        """Mean ratios over this epoch's steps (empty without steps); then starts afresh."""
        if not self._steps:
            return {}
        sq = torch.stack(self._steps).float().pow(2)  # [S, 2, P]
        self._steps = []
        diff, before = sq[:, 0], sq[:, 1]
        row = {UPDATE_RATIO: (diff.sum(1) / before.sum(1)).sqrt().mean()}
        m = self.groups.matrix  # [G, P]
        per_group = ((diff @ m.T) / (before @ m.T)).sqrt().mean(0)  # [G]
        for g, name in enumerate(self.groups.names):
            row[f"{UPDATE_RATIO}/{name}"] = per_group[g]
        return row

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def _tensors(value) -> list[torch.Tensor]:
    """The floating-point tensors in a module's output (tuples, lists, dicts, PackedSequence)."""
    if isinstance(value, torch.Tensor):
        return [value] if value.is_floating_point() else []
    if isinstance(value, nn.utils.rnn.PackedSequence):
        return _tensors(value.data)
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


class NonfiniteWatch:
    """The first module whose forward output or parameter gradient went NaN/inf.

    A forward hook on every submodule keeps the sum of its output (one op: a sum is finite
    exactly when every element is, short of an overflow of values near 1e38); `gradients()`
    adds each step's per-parameter gradient norms, which the clipping computes anyway. Both wait
    on the device, in the order they happened, until `settle()` (at most every MAX_PENDING
    entries, and each epoch) folds them into the first non-finite one. A step's gradients are
    ordered from the last parameter to the first: backward reaches the output's layers first,
    and a gradient that blows up in one layer makes those before it non-finite too.
    """

    MAX_PENDING = 4096

    def __init__(self, model: nn.Module) -> None:
        named = [(name, m) for name, m in model.named_modules() if name]
        if not named or any(True for _ in model.parameters(recurse=False)):
            named.append(("(model)", model))  # parameters of the model itself, or no submodule
        self.names = [name for name, _ in named]
        index = {id(m): i for i, (_, m) in enumerate(named)}
        owner = {}
        for name, p in model.named_parameters():
            module = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            owner[id(p)] = index.get(id(module), 0)
        self._owner = owner
        self.armed = True
        self._pending: list[tuple[tuple[int, ...], torch.Tensor]] = []
        self._index_cache: dict[tuple[int, ...], torch.Tensor] = {}
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self._seen = torch.zeros((), dtype=torch.bool, device=device)
        self._origin = torch.full((), -1, dtype=torch.long, device=device)
        self._handles = [m.register_forward_hook(self._hook(i)) for i, (_, m) in enumerate(named)]

    def _hook(self, index: int):
        def hook(module, args, output):
            if self.armed:
                tensors = _tensors(output)
                if tensors:
                    self._note((index,), tensors[0].detach().sum().reshape(1))

        return hook

    def gradients(self, params: list[torch.Tensor], norms: torch.Tensor) -> None:
        """A step's per-parameter gradient norms ([P], in the order of `params`)."""
        if self.armed:
            order = tuple(self._owner.get(id(p), 0) for p in reversed(params))
            self._note(order, norms.flip(0))

    def _note(self, index: tuple[int, ...], values: torch.Tensor) -> None:
        self._pending.append((index, values))
        if len(self._pending) >= self.MAX_PENDING:
            self.settle()

    @torch.no_grad()
    def settle(self) -> None:
        """Fold the values noted so far into the running result (device ops only)."""
        if not self._pending:
            return
        order = tuple(i for index, _ in self._pending for i in index)
        index = self._index_cache.get(order)
        if index is None:  # epochs repeat one order: the index tensor is made once, not per epoch
            index = torch.tensor(order, device=self._origin.device)
            if len(self._index_cache) < 16:
                self._index_cache[order] = index
        values = torch.cat([v.to(self._origin.device) for _, v in self._pending])
        bad = ~torch.isfinite(values)
        first = index[torch.argmax(bad.to(torch.uint8))]
        now = torch.where(bad.any(), first, torch.full_like(first, -1))
        self._origin = torch.where(self._seen, self._origin, now)
        self._seen = self._seen | bad.any()
        self._pending = []

    @property
    def origin_index(self) -> torch.Tensor:
        """0-d device tensor: the module index of the first non-finite value, -1 for none."""
        self.settle()
        return self._origin

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
