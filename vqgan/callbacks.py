"""Sample grids during VQGAN training, for all three stages.

Every `every_n_steps` of the module's own steps (and at the end of training) the module's
`sample_grid` of a fixed batch (`datamodule.sample_batch()`: validation crops when there are
any) is written to `<run>/samples/step_<step>.png` and sent to every logger that takes images
(TensorBoard, wandb; the CSV logger's record is the PNGs):

- first stage: inputs | reconstructions;
- condition stage: label maps | reconstructed label maps (argmax), coloured (`vqgan.data.colorize`);
- transformer: condition | image | the image's own tokens decoded | one row per sample seed.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
from torch import Tensor

from deid.training import PeriodicSamples
from vqgan.data import to_uint8


class VqganGrids(PeriodicSamples):
    """Writes the grids (module docstring) of any module with `sample_grid(batch)`, every
    `every_n_steps` of its own steps, as `samples/step_<step>.png`."""

    counter = "step"

    def __init__(self, every_n_steps: int = 500) -> None:
        super().__init__(every_n_steps)

    def accepts(self, pl_module: pl.LightningModule) -> bool:
        return hasattr(pl_module, "sample_grid")

    def render(self, pl_module: pl.LightningModule, batch: dict[str, Tensor]) -> np.ndarray:
        return to_uint8(pl_module.sample_grid(batch))
