"""Sample grids during CIAGAN training: source | pose | outputs for 3 target identities.

Saved as PNG under `<run>/samples/` and sent to every logger that takes images (TensorBoard,
wandb); the CSV logger has no image channel, the PNGs are its record.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

from ciagan.data import to_uint8_image
from ciagan.module import CiaganModule
from deid.media import write_image

log = logging.getLogger("ciagan.callbacks")


def spread_targets(num_identities: int, count: int = 3) -> list[int]:
    """`count` target identities spread over the label range (fixed for the whole run)."""
    count = min(count, num_identities)
    return sorted({round(i * (num_identities - 1) / max(count - 1, 1)) for i in range(count)})


class SampleGrids(pl.Callback):
    """Every `every_n_iterations` CIAGAN iterations (and at the end of training)."""

    def __init__(self, every_n_iterations: int = 500, num_targets: int = 3) -> None:
        self.every = every_n_iterations
        self.num_targets = num_targets
        self._batch: dict[str, torch.Tensor] | None = None
        self._last_saved = -1

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        if isinstance(pl_module, CiaganModule) and hasattr(datamodule, "sample_batch"):
            self._batch = datamodule.sample_batch()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_) -> None:
        if self.every > 0 and pl_module.iteration % self.every == 0:
            self.save(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer, pl_module)

    def save(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Path | None:
        if self._batch is None or not trainer.is_global_zero:
            return None
        iteration = int(pl_module.iteration)
        if iteration == self._last_saved:
            return None
        self._last_saved = iteration
        targets = spread_targets(pl_module.hparams.num_identities, self.num_targets)
        grid = pl_module.sample_grid(self._batch, targets)
        image = to_uint8_image(grid)
        path = Path(trainer.default_root_dir) / "samples" / f"iteration_{iteration:07d}.png"
        write_image(path, image)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("samples", np.transpose(image, (2, 0, 1)), iteration)
            elif isinstance(logger, WandbLogger):
                logger.log_image("samples", [image], step=trainer.global_step)
        log.info("sample grid: %s", path)
        return path
