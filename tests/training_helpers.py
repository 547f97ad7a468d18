"""Callbacks that record and interrupt training runs, for the resume tests of every method."""

from __future__ import annotations

import pytorch_lightning as pl
from omegaconf import DictConfig

from deid.training import build


class LossRecorder(pl.Callback):
    """The module's `last_logs` after every batch, keyed by its own counter (`counter`: the
    attribute name, e.g. CIAGAN's `iteration`, VQGAN's `step`)."""

    def __init__(self, counter: str) -> None:
        self.counter = counter
        self.logs: dict[int, dict[str, float]] = {}
        self.first: int | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first is None:
            self.first = getattr(pl_module, self.counter)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        value = getattr(pl_module, self.counter)
        self.logs[value] = {k: float(v) for k, v in pl_module.last_logs.items()}


class CrashAt(pl.Callback):
    """Raises when the module's counter reaches `value` (a run killed mid-training)."""

    def __init__(self, value: int, counter: str) -> None:
        self.value, self.counter = value, counter

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if getattr(pl_module, self.counter) == self.value:
            raise RuntimeError("simulated crash")


def fit(cfg: DictConfig, *callbacks: pl.Callback, ckpt_path: str | None = None) -> pl.Trainer:
    """`deid.training.build` + fit with extra callbacks, seeded like `train`."""
    pl.seed_everything(0, workers=True)
    datamodule, module, trainer = build(cfg)
    trainer.callbacks.extend(callbacks)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer
