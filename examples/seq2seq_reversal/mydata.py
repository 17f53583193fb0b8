"""Sequence reversal, a generated seq2seq task: read a sequence of tokens, output it backwards.

`load_reversal` is what `conf/task/reversal.yaml` names as `_target_`: lrsweep calls it once (in
the launcher) with the YAML's other keys and reads the arrays it returns.
"""

import numpy as np


def load_reversal(n: int = 2000, n_val: int = 400, vocab: int = 10, min_len: int = 5, max_len: int = 9,
                  seed: int = 0) -> dict:
    """x [N, T] token ids 1..vocab-1 (0 pads), y [N, T] the same tokens reversed, lengths [N].

    `vocab_size` tells lrsweep that x holds token ids (the model's input_size is the vocabulary).
    """
    rng = np.random.default_rng(seed)

    def sample(count):
        lengths = rng.integers(min_len, max_len + 1, size=count)
        x = np.zeros((count, max_len), dtype=np.int64)
        y = np.zeros((count, max_len), dtype=np.int64)
        for i, length in enumerate(lengths):
            tokens = rng.integers(1, vocab, size=length)
            x[i, :length] = tokens
            y[i, :length] = tokens[::-1]
        return x, y, lengths

    x, y, lengths = sample(n)
    x_val, y_val, lengths_val = sample(n_val)
    return {"x": x, "y": y, "lengths": lengths, "x_val": x_val, "y_val": y_val, "lengths_val": lengths_val,
            "vocab_size": vocab}
