"""What the collapse signals cost in a user's own training: each example's training with and
without lrsweep's one line (GradientMonitor, the Keras callback, the Lightning callback).

    python benchmarks/bench_callbacks.py             # 3 epochs, 3 alternating repeats each
    python benchmarks/bench_callbacks.py --repeats 7 # steadier medians on a busy machine
    python benchmarks/bench_callbacks.py --smoke     # 1 epoch, 1 repeat (CI)

The three examples' models and data (digits read row by row, a 2-layer LSTM of 32 units (64 in
the function example), SGD + momentum 0.9, batch size 32, lr 0.3, no clipping) train in this
process, one thread, each way in alternating order so that a slow spell of a shared machine falls
on both; the CPU seconds of this process are steadier than wall time there. Printed per example:
the median seconds of the baseline and of the run with the signals, and their ratio (the
median, and the range, of each round's ratio of its two back-to-back runs); then the signals'
cost split into the part paid once per epoch (the probe and crit_lr, timed inside) and the part
paid per step (the rest of the difference), so the ratio can be worked out for another number
of steps per epoch. The baselines are the examples as they
were before the signals: the function's loop with `GradientMonitor(model)` (its gradient norms)
and also with no monitor at all (the per-step part is against this one); Keras and Lightning
with their CSVLogger only. Training itself is identical both ways
(tests/test_integrations.py and tests/test_monitor_signals.py check that); only the time differs.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LR = 0.3


def _example(folder: str, module: str):
    spec = importlib.util.spec_from_file_location(
        module, ROOT / "examples" / folder / f"{module}.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def function_loop(mode: str, epochs: int, data) -> None:
    """examples/function_trainer/mytrain.py's loop; mode: none | norms | signals."""
    import torch
    from torch import nn

    from sweep import GradientMonitor

    mytrain, ((x, y), (xv, yv)) = data
    torch.manual_seed(0)
    model = mytrain.Net(64, 2)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    monitor = None
    if mode == "norms":
        monitor = GradientMonitor(model)
    elif mode == "signals":
        monitor = GradientMonitor(model, opt, loss_fn)
        monitor.probe(xv[:64], yv[:64])
    order = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=order).split(32):
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            if monitor is not None:
                monitor.clip(None, batch=(x[idx], y[idx]))
            opt.step()
        model.eval()
        with torch.no_grad():
            model(xv).argmax(-1)
        if monitor is not None:
            monitor.epoch_metrics()


def keras_fit(mode: str, epochs: int, data, log: Path) -> None:
    """examples/keras_script/train.py's fit; mode: none | signals."""
    import keras

    from sweep.integrations.keras import CollapseSignals

    (x, y), (xv, yv) = data
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(8, 8)),
            keras.layers.LSTM(32, return_sequences=True),
            keras.layers.LSTM(32),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=LR, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    callbacks = [keras.callbacks.CSVLogger(str(log)), keras.callbacks.TerminateOnNaN()]
    if mode == "signals":
        callbacks.insert(0, CollapseSignals(probe=(xv, yv)))
    model.fit(
        x, y, validation_data=(xv, yv), epochs=epochs, batch_size=32, verbose=0, callbacks=callbacks
    )


def lightning_fit(mode: str, epochs: int, data, log: Path) -> None:
    """examples/lightning_script/train.py's fit; mode: none | signals."""
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    from sweep.integrations.lightning import CollapseSignals

    class DigitsLSTM(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(8, 32, num_layers=2, batch_first=True)
            self.head = torch.nn.Linear(32, 10)

        def forward(self, x):
            return self.head(self.lstm(x)[0][:, -1])

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self(x), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self(x)
            self.log("val_loss", torch.nn.functional.cross_entropy(logits, y), on_epoch=True)
            self.log("val_acc", (logits.argmax(1) == y).float().mean(), on_epoch=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=LR, momentum=0.9)

    (x, y), (xv, yv) = data
    pl.seed_everything(0, verbose=False)
    train = DataLoader(
        TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    val = DataLoader(TensorDataset(torch.from_numpy(xv), torch.from_numpy(yv)), batch_size=512)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        logger=CSVLogger(save_dir=str(log), name="", version=""),
        callbacks=[CollapseSignals()] if mode == "signals" else [],
        log_every_n_steps=10,
    )
    trainer.fit(DigitsLSTM(), train, val)


class EpochClock:
    """CPU seconds spent in one per-epoch method (the probe's and crit_lr's share)."""

    def __init__(self, owner, name: str) -> None:
        self.seconds, self.calls = 0.0, 0
        self.active = False  # counting only in the runs with the signals
        method = getattr(owner, name)

        def timed_method(*args, **kwargs):
            t0 = time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                if self.active:
                    self.seconds += time.process_time() - t0
                    self.calls += 1

        setattr(owner, name, timed_method)


def timed(run, mode: str) -> float:
    t0 = time.process_time()
    run(mode)
    return time.process_time() - t0


def compare(name: str, run, modes: tuple[str, ...], repeats: int, clock=None, steps=0) -> None:
    """Median CPU seconds of each mode over `repeats` alternating rounds (after one untimed run
    of each), and the ratios."""
    took: dict[str, list[float]] = {m: [] for m in modes}
    for mode in modes:  # warm up: first calls, imports, allocator
        run(mode)
    for r in range(repeats):
        for mode in modes if r % 2 == 0 else modes[::-1]:
            if clock is not None:
                clock.active = mode == "signals"
            took[mode].append(timed(run, mode))
    median = {m: statistics.median(v) for m, v in took.items()}
    with_signals = median["signals"]
    for base in modes[:-1]:
        # each round's own pair (run back to back): its ratio, median and range over the rounds
        pairs = sorted(s / b for s, b in zip(took["signals"], took[base]))
        print(
            f"{name:<12} {base:>8} {median[base]:8.2f} s   signals {with_signals:8.2f} s   "
            f"ratio {statistics.median(pairs):6.3f} (rounds {pairs[0]:.3f} .. {pairs[-1]:.3f})"
        )
    if clock is not None and clock.calls:
        per_epoch = clock.seconds / clock.calls
        epochs = clock.calls / repeats
        per_step = (with_signals - median[modes[0]] - per_epoch * epochs) / (epochs * steps)
        print(
            f"{'':<12} of which per epoch {1000 * per_epoch:6.1f} ms (probe, crit_lr), "
            f"per step {1000 * per_step:6.2f} ms ({steps} steps an epoch)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="1 epoch, 1 repeat")
    args = parser.parse_args()
    epochs, repeats = (1, 1) if args.smoke else (args.epochs, args.repeats)

    import logging
    import tempfile

    import lightning.pytorch  # noqa: F401  (it sets its own loggers' level when imported)
    import torch

    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    mytrain = _example("function_trainer", "mytrain")
    digits = _example("keras_script", "train").load_digits_split()
    tmp = Path(tempfile.mkdtemp(prefix="bench_callbacks_"))
    steps = math.ceil(len(digits[0][0]) / 32)  # the Keras and Lightning examples' split
    steps_function = math.ceil(len(mytrain.digits()[0][0]) / 32)

    from sweep.integrations.keras import CollapseSignals as KerasSignals
    from sweep.integrations.lightning import CollapseSignals as LightningSignals
    from sweep.trainers.gradients import GradientMonitor

    clocks = {
        "function": EpochClock(GradientMonitor, "epoch_metrics"),
        "keras": EpochClock(KerasSignals, "on_epoch_end"),
        "lightning": EpochClock(LightningSignals, "on_train_epoch_end"),
    }
    print(f"{epochs} epochs, median of {repeats} alternating repeats, CPU seconds (1 thread)")
    compare(
        "function",
        lambda m: function_loop(m, epochs, (mytrain, mytrain.digits())),
        ("none", "norms", "signals"),
        repeats,
        clocks["function"],
        steps_function,
    )
    compare(
        "keras",
        lambda m: keras_fit(m, epochs, digits, tmp / f"{m}.csv"),
        ("none", "signals"),
        repeats,
        clocks["keras"],
        steps,
    )
    runs = iter(range(10**6))  # a fresh log folder per fit (Lightning clears a used one)
    compare(
        "lightning",
        lambda m: lightning_fit(m, epochs, digits, tmp / f"lightning-{m}-{next(runs)}"),
        ("none", "signals"),
        repeats,
        clocks["lightning"],
        steps,
    )


if __name__ == "__main__":
    main()
