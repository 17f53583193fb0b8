"""The classic encoder-decoder of Keras tutorials, in PyTorch: LSTM -> RepeatVector -> LSTM ->
TimeDistributed(Dense). The encoder's last state is repeated as the decoder's input at every
step, the only way information reaches the decoder (no attention, no shortcut to the answer's
alignment): its gradients pass through every decoder step and the encoder, and with a plain SGD
step that is too large they explode.

lrsweep builds it with `hydra.utils.instantiate` from `conf/model/seq2seq.yaml`, passing
`input_size` (features per step) and `output_size` (the target's dimension per step), because the
constructor names them; it calls `forward(inputs, lengths)`.
"""

import torch
from torch import nn


class RepeatSeq2Seq(nn.Module):
    def __init__(self, input_size: int, output_size: int, hidden: int = 64) -> None:
        super().__init__()
        self.encoder = nn.LSTM(input_size, hidden, batch_first=True)
        self.decoder = nn.LSTM(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, output_size)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        _, (h, _) = self.encoder(inputs)  # inputs [B, T, F]
        repeated = h[-1].unsqueeze(1).expand(-1, inputs.shape[1], -1)  # RepeatVector(T)
        out, _ = self.decoder(repeated)
        return self.head(out)  # [B, T, D]: one value per step
