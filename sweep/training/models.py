"""The recurrent network of one run: optional embedding -> LSTM/GRU -> linear read-out.

Usage::

    net = build_model(cfg.model, task, seed=3)     # initialisation fixed by the seed alone
    out = net(x, lengths_cpu)                      # [B, C] / [B, D], or [B, T, .] per step

A sequence's padding never changes its output: a unidirectional network reads each sequence's
output at its own last step (later steps cannot influence it); a bidirectional one packs the
batch with `pack_padded_sequence`. `lengths` is a CPU tensor (packing reads it on the host); the
trainer keeps a CPU copy so no device->host copy happens per step.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from sweep.config import ModelConfig


class RecurrentNet(nn.Module):
    """Embedding (token inputs only) -> nn.LSTM / nn.GRU (batch_first) -> nn.Linear."""

    def __init__(
        self,
        cfg: ModelConfig,
        input_dim: int,
        output_dim: int,
        tokens: bool = False,
        per_step: bool = False,
    ) -> None:
        super().__init__()
        self.cell = cfg.name
        self.per_step = per_step
        self.embed = nn.Embedding(input_dim, cfg.embedding_dim, padding_idx=0) if tokens else None
        rnn_in = cfg.embedding_dim if tokens else input_dim
        rnn_type = nn.LSTM if cfg.name == "lstm" else nn.GRU
        self.rnn = rnn_type(
            rnn_in,
            cfg.hidden_size,
            num_layers=cfg.layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
            bidirectional=cfg.bidirectional,
        )
        self.directions = 2 if cfg.bidirectional else 1
        self.head = nn.Linear(cfg.hidden_size * self.directions, output_dim)
        if cfg.name == "lstm" and cfg.forget_bias:
            h = cfg.hidden_size
            with torch.no_grad():
                for name, bias in self.rnn.named_parameters():
                    if name.startswith("bias_ih"):  # gate order i, f, g, o
                        bias[h : 2 * h].add_(cfg.forget_bias)

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.embed is not None:
            x = self.embed(x)
        steps = x.shape[1]
        if lengths is not None and self.directions == 1:
            # Reading forward, a step's output never depends on the steps after it: run the
            # padded batch and read each sequence at its own end. This also keeps the fused
            # oneDNN kernel on CPUs (2x faster than the packed-sequence path, which it refuses).
            out, _ = self.rnn(x)
            if self.per_step:
                return self.head(out)  # outputs past a sequence's end are masked by the loss
            last = out[torch.arange(out.shape[0], device=out.device), lengths.to(out.device) - 1]
            return self.head(last)
        if lengths is not None:  # backwards, padding would come first: pack the batch
            x = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, state = self.rnn(x)
        if self.per_step:
            if lengths is not None:
                out, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)
            return self.head(out)
        h_n = state[0] if isinstance(state, tuple) else state  # [layers * directions, B, H]
        if self.directions == 2:
            last = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # forward end, backward end (at step 0)
        else:
            last = h_n[-1]
        return self.head(last)


def build_model(cfg: ModelConfig, task, seed: int) -> RecurrentNet:
    """A freshly initialised network whose weights depend only on (config, task shape, seed)."""
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        return RecurrentNet(
            cfg,
            input_dim=task.input_dim,
            output_dim=task.output_dim,
            tokens=task.vocab_size is not None,
            per_step=task.per_step,
        )
    finally:
        torch.set_rng_state(gen_state)


def l2_penalty(params: list[torch.Tensor]) -> torch.Tensor:
    """sum(w^2) over weight matrices and embeddings (biases excluded)."""
    return torch.stack([(p * p).sum() for p in params if p.dim() >= 2]).sum()
