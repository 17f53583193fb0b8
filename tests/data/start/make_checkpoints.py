"""Writes the small checkpoints the tests start sweeps from (run once; the files are committed).

- digits-lstm4-sgd.pt: lrsweep's LSTM (hidden 4, 1 layer) for the digits task, after one step of
  SGD with momentum: {"model": state_dict, "optimizer": state_dict} (the bad-input table's model).
- digits-lstm4-adam.pt: the same network after one Adam step (another optimizer's state).
- digits-lstm4-weights.pt: its plain state_dict (no epoch, no optimizer).

    python tests/data/start/make_checkpoints.py
"""

from pathlib import Path

import torch

from sweep.config import load_config
from sweep.tasks import build_task
from sweep.training.models import build_model

HERE = Path(__file__).parent


def main() -> None:
    cfg = load_config(["model.hidden_size=4", "model.layers=1"])
    task = build_task(cfg.task)
    for name, make in (
        ("sgd", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
        ("adam", lambda p: torch.optim.Adam(p, lr=0.01)),
    ):
        net = build_model(cfg.model, task, 0)
        opt = make(net.parameters())
        out = net(task.x_train[:32], None)
        torch.nn.functional.cross_entropy(out, task.y_train[:32]).backward()
        opt.step()
        torch.save(
            {"model": net.state_dict(), "optimizer": opt.state_dict()},
            HERE / f"digits-lstm4-{name}.pt",
        )
        if name == "sgd":
            torch.save(net.state_dict(), HERE / "digits-lstm4-weights.pt")


if __name__ == "__main__":
    main()
