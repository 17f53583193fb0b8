"""Device state that differs between CPU and CUDA, written so every branch runs on a CPU in tests.

Usage::

    describe = configure_device(device)          # once per worker: GPU index, FP32 precision
    rng = SeedRng(seed, device)                   # one seed's random streams (dropout masks)
    with rng.active():                            # ... swapped in around each of its epochs
        train_one_epoch()
    state = rng.state_dict()                      # into a checkpoint
    rng.load_state_dict(state, step)              # resumes on this device, whatever wrote it

The `cuda` and `backends` arguments default to `torch.cuda` and `torch.backends`; tests pass
stand-ins, so the CUDA branches (a checkpoint written on a GPU and resumed on a CPU, and the
reverse; the precision flags) are exercised on machines without a GPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

# Full IEEE FP32 on CUDA. torch 2.13 defaults cuDNN's recurrent layers to TF32 on Ampere and
# newer GPUs (torch.backends.cudnn.rnn.fp32_precision == "tf32") while matmuls stay IEEE: packed
# seeds (batched matmuls) and separate seeds (cuDNN LSTM) would then round differently, and a
# divergence boundary could move with the packing mode. A stability measurement wants one
# precision, the full one; it is recorded with every run.
FP32_PRECISION = "ieee"


def configure_device(device: torch.device, cuda: Any = None, backends: Any = None) -> str:
    """Prepare this process for training on `device`; returns a description recorded per run.

    On CUDA: make `device` the current GPU (it must carry an index) and set full FP32 precision
    for matmuls and cuDNN RNNs. cudnn.benchmark is left alone: it tunes convolutions only, and
    lrsweep's models have none.
    """
    if device.type != "cuda":
        return "cpu"
    cuda = cuda or torch.cuda
    backends = backends or torch.backends
    if device.index is None:
        raise ValueError(f"a CUDA device needs an explicit index (cuda:N), but got {device}.")
    cuda.set_device(device)
    backends.cuda.matmul.fp32_precision = FP32_PRECISION
    backends.cudnn.rnn.fp32_precision = FP32_PRECISION
    return describe_device(device, cuda, backends)


def describe_device(device: torch.device, cuda: Any = None, backends: Any = None) -> str:
    """What a run was trained on, as recorded with it: "cpu (1 thread)" (the torch threads: results
    can change in their last bits with their number), or the GPU, its name and the FP32
    precision in force for matmuls and cuDNN RNNs (read from the flags, not assumed)."""
    if device.type != "cuda":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' if threads != 1 else ''})"
    cuda = cuda or torch.cuda
    backends = backends or torch.backends
    matmul, rnn = backends.cuda.matmul.fp32_precision, backends.cudnn.rnn.fp32_precision
    precision = f"fp32 {matmul}" if matmul == rnn else f"fp32 matmul {matmul}, cudnn rnn {rnn}"
    return f"{device} ({cuda.get_device_name(device)}), {precision}"


def derived_seed(seed: int, step: int) -> int:
    """A seed for a stream that must start mid-run (a CUDA stream for a run resumed on a GPU
    from a CPU checkpoint): a fixed function of (seed, step), so the resumed run is repeatable."""
    return (int(seed) * 1_000_003 + int(step) * 7_919 + 0x5EED) % (2**63 - 1)


class SeedRng:
    """The random streams of one seed: the CPU generator always, the CUDA one on a GPU.

    The global generators are process-wide; a seed's own states are swapped in around each of
    its epochs (`active`), so dropout masks depend on the seed alone, not on which seeds share
    the worker. The CUDA entry exists exactly when `device` is a CUDA device, whatever the
    state was loaded from.
    """

    def __init__(self, seed: int, device: torch.device, cuda: Any = None) -> None:
        self.seed = int(seed)
        self.device = device
        self.cuda = cuda or torch.cuda
        self.state: dict[str, torch.Tensor] = {"cpu": _seeded_cpu_state(self.seed)}
        if self.on_cuda:
            self.state["cuda"] = self._seeded_cuda_state(self.seed)

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"

    def _seeded_cuda_state(self, seed: int) -> torch.Tensor:
        saved = self.cuda.get_rng_state(self.device)
        self.cuda.manual_seed(seed)  # seeds the current GPU, which configure_device made `device`
        state = self.cuda.get_rng_state(self.device)
        self.cuda.set_rng_state(saved, self.device)
        return state

    @contextmanager
    def active(self) -> Iterator[None]:
        """Run with this seed's streams, then keep their advanced states."""
        saved_cpu = torch.get_rng_state()
        torch.set_rng_state(self.state["cpu"])
        saved_cuda: torch.Tensor | None = None
        if self.on_cuda:
            saved_cuda = self.cuda.get_rng_state(self.device)
            self.cuda.set_rng_state(self.state["cuda"], self.device)
        try:
            yield
        finally:
            self.state["cpu"] = torch.get_rng_state()
            torch.set_rng_state(saved_cpu)
            if saved_cuda is not None:
                self.state["cuda"] = self.cuda.get_rng_state(self.device)
                self.cuda.set_rng_state(saved_cuda, self.device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.state)

    def load_state_dict(self, state: dict[str, torch.Tensor], step: int) -> None:
        """Restore from a checkpoint written on any device.

        A CUDA stream from a GPU checkpoint is dropped on a CPU (the CPU's dropout draws from its
        own generator); a CPU checkpoint resumed on a GPU gets a CUDA stream seeded from
        (seed, step), so the resumed run is repeatable rather than drawing from whatever state
        the process's GPU generator happens to be in.
        """
        self.state = {"cpu": state["cpu"]}
        if self.on_cuda:
            cuda_state = state.get("cuda")
            self.state["cuda"] = (
                cuda_state
                if cuda_state is not None
                else self._seeded_cuda_state(derived_seed(self.seed, step))
            )


def _seeded_cpu_state(seed: int) -> torch.Tensor:
    """The default CPU generator's state after torch.manual_seed(seed), made without touching any
    global generator (torch.manual_seed would also reseed every GPU's)."""
    return torch.Generator().manual_seed(seed).get_state()
