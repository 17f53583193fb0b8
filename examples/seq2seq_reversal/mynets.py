"""A seq2seq encoder-decoder: a bidirectional LSTM encoder and an LSTM decoder with teacher forcing.

lrsweep builds it with `hydra.utils.instantiate` from `conf/model/seq2seq.yaml`, passing
`input_size` (the vocabulary: the task's inputs are token ids) and `output_size` (the number of
classes: tokens) because the constructor names them. During training lrsweep calls
`forward(inputs, lengths, targets=targets)`, so the decoder reads the true previous token
(teacher forcing); during evaluation it calls `forward(inputs, lengths)` and the decoder reads
its own previous prediction.
"""

from typing import Optional

import torch
from torch import nn


class Seq2Seq(nn.Module):
    def __init__(self, input_size: int, output_size: int, hidden: int = 64, embedding: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(input_size, embedding, padding_idx=0)
        self.encoder = nn.LSTM(embedding, hidden, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * hidden, hidden)
        self.target_embed = nn.Embedding(output_size + 1, embedding)  # + a start token
        self.decoder = nn.LSTMCell(embedding + 2 * hidden, hidden)
        self.head = nn.Linear(hidden, output_size)
        self.start = output_size

    def forward(self, inputs: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                targets: Optional[torch.Tensor] = None) -> torch.Tensor:
        memory, (h_n, _) = self.encoder(self.embed(inputs))  # [B, T, 2H]
        h = torch.tanh(self.bridge(torch.cat([h_n[0], h_n[1]], dim=-1)))
        c = torch.zeros_like(h)
        previous = torch.full((inputs.shape[0],), self.start, dtype=torch.long, device=inputs.device)
        outputs = []
        for t in range(inputs.shape[1]):
            # The encoder state at the mirrored position carries what step t must emit.
            mirrored = memory[torch.arange(inputs.shape[0], device=inputs.device), ((lengths - 1 - t).clamp_min(0) if lengths is not None
                                                              else inputs.shape[1] - 1 - t)]
            h, c = self.decoder(torch.cat([self.target_embed(previous), mirrored], dim=-1), (h, c))
            logits = self.head(h)
            outputs.append(logits)
            previous = targets[:, t] if targets is not None else logits.argmax(-1)
        return torch.stack(outputs, dim=1)  # [B, T, C]: one class per step
