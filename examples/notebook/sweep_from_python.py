"""lrsweep from a notebook (or any Python script): a training function defined right here,
swept with the Python API, the tables back as pandas DataFrames.

    python sweep_from_python.py                # or paste the cells into a Jupyter notebook

The function is an object of this session (a notebook's functions cannot be imported by worker
processes), so it runs in this process, one run after another. Calling `run_sweep` again with the
same arguments resumes: only what is missing is trained. The report is the same report.html as
`sweep run` writes.
"""

# %% a training loop you already have: a GRU on the digits, read row by row
import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import sweep


def load():
    d = load_digits()
    x, y = torch.tensor(d.images / 16.0, dtype=torch.float32), torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    val, train = perm[:400], perm[400:]
    return (x[train], y[train]), (x[val], y[val])


def fit(setting, seed, epochs, report):
    (x, y), (xv, yv) = load()
    torch.manual_seed(seed)
    rnn, head = nn.GRU(8, 32, batch_first=True), nn.Linear(32, 10)
    params = [*rnn.parameters(), *head.parameters()]
    opt = torch.optim.SGD(params, lr=setting["lr"], momentum=0.9)
    for epoch in range(1, epochs + 1):
        for idx in torch.randperm(len(x)).split(setting["batch_size"]):
            loss = nn.functional.cross_entropy(head(rnn(x[idx])[0][:, -1]), y[idx])
            opt.zero_grad()
            loss.backward()
            if setting["clip"] is not None:
                nn.utils.clip_grad_norm_(params, setting["clip"])
            opt.step()
        with torch.no_grad():
            out = head(rnn(xv)[0][:, -1])
        report(
            epoch,
            val_acc=float((out.argmax(-1) == yv).float().mean()),
            val_loss=float(nn.functional.cross_entropy(out, yv)),
            train_loss=float(loss),
        )


# %% sweep it: learning rate x clipping x 3 seeds
result = sweep.run_sweep(
    fit,
    grid={"lr": [0.03, 0.3, 3.0], "clip": [None, 1.0], "batch_size": [64]},
    seeds=3,
    epochs=8,
    n_val=400,
    chance=float(np.bincount(load()[1][1]).max()) / 400,
    results_dir="results",
)

# %% read it
print(
    result.summary[["lr", "clip", "n_runs", "mean_best_acc", "collapse_rate", "collapse_rate_hi"]]
)
print(result.verdict)
print("report:", result.report)
