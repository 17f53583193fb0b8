"""Where a NaN/inf first appeared (`nonfinite_origin`): the failing step replayed with hooks.

Normal steps pay nothing: only after the loop has seen a non-finite loss or gradient is the
failing step run once more, from the weights it started from (kept by `UpdateSteps`), with
hooks that watch every module. The origin is, in this order:

1. a parameter group whose weights were already non-finite before the step (a NaN written into
   a layer, or left there by the previous update);
2. the first module whose forward output went non-finite (for a fused nn.LSTM / nn.GRU, the
   first of its layers, found by rerunning the cell equations: `rnn.l1`);
3. `loss`, when every output was finite but the loss was not;
4. the first module, in the order backward reaches them, whose input gradient or parameter
   gradient went non-finite.
Empty when the replay stays finite (e.g. another dropout draw).

Names: lrsweep's networks use their parameter groups (`embed`, `rnn.l0`, `head`); a user's
model the module's qualified name, with `.l<k>` for a layer of a fused recurrent module
(`encoder.lstm.l1`); parameters set on the model itself are `(own)`.

Usage::

    origin = trace_origin(model, lambda: loss_of_the_failing_step(), builtin=True)
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sweep.training.gradients import OWN, group_of
from sweep.training.saturation import RNN_TYPES, module_layers, run_layers

_LAYER = re.compile(r"_l(\d+)(_reverse)?$")


def module_of(param: str, builtin: bool) -> str:
    """The origin name of a parameter (see the module docstring)."""
    if builtin:
        return group_of(param, True)
    if "." not in param:
        return OWN
    module, leaf = param.rsplit(".", 1)
    layer = _LAYER.search(leaf)
    return f"{module}.l{layer.group(1)}" if layer else module


def _finite(value: Any) -> bool:
    """Are all floating tensors in `value` (a tensor, tuple, PackedSequence) finite?"""
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, nn.utils.rnn.PackedSequence):
        return _finite(value.data)
    if isinstance(value, (tuple, list)):
        return all(_finite(v) for v in value)
    return True


def nonfinite_parameters(model: nn.Module, builtin: bool) -> str:
    """The first parameter group (in the model's order) holding a NaN/inf, or ""."""
    for name, p in model.named_parameters():
        if not _finite(p.detach()):
            return module_of(name, builtin)
    return ""


def trace_origin(model: nn.Module, step: Callable[[], torch.Tensor], builtin: bool) -> str:
    """Replay one step (`step()` runs the forward pass and returns the loss) with hooks; returns
    the origin name, or "" when the replay stayed finite. The model's gradients are left as the
    replay made them (the run has stopped); its weights are not changed."""
    origin = nonfinite_parameters(model, builtin)
    if origin:
        return origin
    forward: list[str] = []
    backward: list[str] = []
    inputs: dict[str, tuple] = {}
    handles: list[Any] = []
    modules = {name: m for name, m in model.named_modules() if name}
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(_on_output(name, forward, inputs)))
            if not list(module.children()):
                handles.append(module.register_full_backward_hook(_on_input_grad(name, backward)))
        for pname, p in model.named_parameters():
            if p.requires_grad:
                handles.append(p.register_hook(_on_param_grad(module_of(pname, builtin), backward)))
        with torch.enable_grad():
            model.zero_grad(set_to_none=True)
            loss = step()
            if forward:
                return _refine(forward[0], modules[forward[0]], inputs)
            if not _finite(loss):
                return "loss"
            with warnings.catch_warnings():
                # The first module's inputs (the data) need no gradient; its hook then reports
                # the output gradients, which the parameter hooks cover: not a problem here.
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                loss.backward()
        return backward[0] if backward else ""
    except Exception:  # a hook the model does not allow: no origin rather than a failed run
        return ""
    finally:
        for h in handles:
            h.remove()


def _on_output(name: str, events: list[str], inputs: dict[str, tuple]) -> Callable:
    def hook(mod, args, output):
        if isinstance(mod, RNN_TYPES):
            inputs.setdefault(name, tuple(args))
        if not _finite(output):
            events.append(name)

    return hook


def _on_input_grad(name: str, events: list[str]) -> Callable:
    def hook(mod, grad_input, grad_output):
        if not _finite([g for g in grad_input if g is not None]):
            events.append(name)

    return hook


def _on_param_grad(name: str, events: list[str]) -> Callable:
    def hook(grad):
        # Finite values whose norm overflows count too: the loop's gradient norm went inf there.
        if not (_finite(grad) and bool(torch.isfinite(torch.linalg.vector_norm(grad.float())))):
            events.append(name)

    return hook


def _refine(name: str, module: nn.Module, inputs: dict[str, tuple]) -> str:
    """A fused recurrent module: its first layer whose output went non-finite."""
    if not isinstance(module, RNN_TYPES) or name not in inputs:
        return name
    x = inputs[name][0]
    if isinstance(x, nn.utils.rnn.PackedSequence):
        x = nn.utils.rnn.pad_packed_sequence(x, batch_first=True)[0]
    elif not module.batch_first:
        x = x.transpose(0, 1)
    with torch.no_grad():
        run = run_layers(
            "lstm" if isinstance(module, nn.LSTM) else "gru", module_layers(module), x[None]
        )
    for k, out in enumerate(run.outputs):
        if not _finite(out):
            return f"{name}.l{k}"
    return name
