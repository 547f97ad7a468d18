"""Sample grids during VQGAN training, for all three stages.

Every `every_n_steps` of the module's own steps (and at the end of training) the module's
`sample_grid` of a fixed batch (`datamodule.sample_batch()`: validation crops when there are
any) is written to `<run>/samples/step_<step>.png` and sent to every logger that takes images
(TensorBoard, wandb; the CSV logger's record is the PNGs):

- first stage: inputs | reconstructions;
- condition stage: label maps | reconstructed label maps (argmax), coloured (`colorize`);
- transformer: condition | image | the image's own tokens decoded | one row per sample seed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor

from deid.media import write_image
from vqgan.data import to_uint8

log = logging.getLogger("vqgan.callbacks")


def palette(num_labels: int) -> Tensor:
    """[num_labels, 3] colours in [-1, 1]: 0 (background/unlabeled) black, 1 (person) white,
    the others fixed pseudo-random colours."""
    generator = torch.Generator().manual_seed(183)
    colours = torch.rand((max(num_labels, 2), 3), generator=generator) * 2 - 1
    colours[0] = -1.0
    colours[1] = 1.0
    return colours[:num_labels]


def colorize(labels: Tensor, num_labels: int) -> Tensor:
    """Long label ids [B, H, W] -> colour images [B, 3, H, W] in [-1, 1]."""
    colours = palette(num_labels).to(labels.device)
    return colours[labels].permute(0, 3, 1, 2)


class VqganGrids(pl.Callback):
    """Writes the grids (module docstring) of any module with `sample_grid(batch)`."""

    def __init__(self, every_n_steps: int = 500) -> None:
        self.every = int(every_n_steps)
        self._batch: dict[str, Tensor] | None = None
        self._last_saved = -1

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        if hasattr(pl_module, "sample_grid") and hasattr(datamodule, "sample_batch"):
            self._batch = datamodule.sample_batch()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_) -> None:
        if self.every > 0 and pl_module.step % self.every == 0:
            self.save(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer, pl_module)

    def save(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Path | None:
        if self._batch is None or not trainer.is_global_zero:
            return None
        step = int(pl_module.step)
        if step == self._last_saved:
            return None
        self._last_saved = step
        image = to_uint8(pl_module.sample_grid(self._batch))
        path = Path(trainer.default_root_dir) / "samples" / f"step_{step:07d}.png"
        write_image(path, image)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("samples", np.transpose(image, (2, 0, 1)), step)
            elif isinstance(logger, WandbLogger):
                logger.log_image("samples", [image], step=trainer.global_step)
        log.info("sample grid: %s", path)
        return path
