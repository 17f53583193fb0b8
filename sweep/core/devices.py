"""Which device each local worker trains on: pure functions of (device string, GPU count).

Usage::

    is_device_string("cuda:1")                                      # the grammar torch accepts
    plan_worker_devices("cuda", n_cuda=4, workers="auto", n_settings=10, cores=16)
    # -> ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]

No torch import here: the launcher asks torch for the GPU count once and passes it in, so every
branch (four GPUs, none, one named GPU) is testable on any machine.
"""

from __future__ import annotations

import os
import re

# torch.device's own grammar for the types lrsweep supports: an index is a plain decimal number
# without a sign, spaces or leading zeros ("cuda:01" is refused by torch.device).
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(?::(?:0|[1-9][0-9]*))?")


def is_device_string(device: str) -> bool:
    """True for auto, cpu, cuda and cuda:N written as torch.device accepts it."""
    return isinstance(device, str) and DEVICE_PATTERN.fullmatch(device) is not None


def device_for_worker(device: str, n_cuda: int, index: int) -> str:
    """The device of local worker `index` (0-based).

    - `cpu`, or `auto` on a machine without a GPU: the CPU;
    - `auto` or `cuda` with GPUs: round robin over them (worker i on cuda:i mod n), always with
      an explicit index (torch.cuda.set_device refuses a bare "cuda");
    - `cuda:N`: that GPU, for every worker.
    """
    if not is_device_string(device):
        raise ValueError(f"`device` must be auto, cpu, cuda or cuda:N, but got {device!r}.")
    if device == "cpu" or (device == "auto" and n_cuda == 0):
        return "cpu"
    if device.startswith("cuda:"):
        return device
    if n_cuda == 0:
        raise ValueError(f"device {device!r} needs a CUDA GPU, but n_cuda={n_cuda}.")
    return f"cuda:{index % n_cuda}"


def worker_count(device: str, n_cuda: int, workers: int | str, n_settings: int, cores: int) -> int:
    """How many local workers: `workers` when it is a number; `auto` is one per GPU the device
    string covers (one for `cuda:N`), else one per CPU core, never more than there are settings."""
    if workers != "auto":
        return int(workers)
    if device_for_worker(device, n_cuda, 0) == "cpu":
        per_machine = cores
    elif device.startswith("cuda:"):
        per_machine = 1  # one named GPU: its workers would only queue on it
    else:
        per_machine = n_cuda
    return max(1, min(per_machine, n_settings))


def plan_worker_devices(
    device: str, n_cuda: int, workers: int | str, n_settings: int, cores: int
) -> list[str]:
    """The device string of every local worker, in worker order."""
    count = worker_count(device, n_cuda, workers, n_settings, cores)
    return [device_for_worker(device, n_cuda, i) for i in range(count)]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
