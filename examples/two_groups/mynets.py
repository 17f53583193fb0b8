"""A model of two parts: a GRU encoder and a wide read-out initialised large (`gain`).

lrsweep records the gradient norm of each top-level child module (here `encoder` and `readout`)
per epoch; the report's per-group gradient figure shows which one exploded at a collapse. On
digits at lr=0.3 (SGD, momentum 0.9) every seed collapses within a few epochs, and it is the
encoder's gradient norm that spikes at the collapse epoch (up to 100x), while the read-out's
grows steadily and stays high.
"""

import torch
from torch import nn


class TwoPart(nn.Module):
    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden: int = 32,
        width: int = 128,
        gain: float = 2.0,
    ) -> None:
        super().__init__()
        self.encoder = nn.GRU(input_size, hidden, batch_first=True)
        self.readout = nn.Sequential(
            nn.Linear(hidden, width), nn.Tanh(), nn.Linear(width, output_size)
        )
        with torch.no_grad():
            for layer in self.readout:
                if isinstance(layer, nn.Linear):
                    layer.weight.mul_(gain)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        out, _ = self.encoder(inputs)
        if lengths is not None:  # each sequence's output at its own last step
            out = out[torch.arange(out.shape[0], device=out.device), lengths - 1]
        else:
            out = out[:, -1]
        return self.readout(out)
