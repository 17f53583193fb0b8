# mynets.py
import torch
from torch import nn


class Tagger(nn.Module):
    def __init__(self, input_size, output_size, hidden=32):
        super().__init__()
        self.encoder = nn.LSTM(input_size, hidden, batch_first=True)
        self.readout = nn.Linear(hidden, output_size)

    def forward(self, inputs, lengths=None):
        out, _ = self.encoder(inputs)  # inputs [B, T, F]
        if lengths is not None:  # each sequence's own last step
            out = out[torch.arange(len(out), device=out.device), lengths - 1]
        else:
            out = out[:, -1]
        return self.readout(out)  # [B, C]
