"""Sample grids during CIAGAN training: source | pose | outputs for 3 target identities.

Saved as PNG under `<run>/samples/` and sent to every logger that takes images (TensorBoard,
wandb); the CSV logger has no image channel, the PNGs are its record.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch

from ciagan.module import CiaganModule
from ciagan.tensors import to_uint8_image
from deid.training import PeriodicSamples


def spread_targets(num_identities: int, count: int = 3) -> list[int]:
    """`count` target identities spread over the label range (fixed for the whole run)."""
    count = min(count, num_identities)
    return sorted({round(i * (num_identities - 1) / max(count - 1, 1)) for i in range(count)})


class SampleGrids(PeriodicSamples):
    """Every `every_n_iterations` CIAGAN iterations (and at the end of training), as
    `samples/iteration_<iteration>.png`."""

    counter = "iteration"

    def __init__(self, every_n_iterations: int = 500, num_targets: int = 3) -> None:
        super().__init__(every_n_iterations)
        self.num_targets = num_targets

    def accepts(self, pl_module: pl.LightningModule) -> bool:
        return isinstance(pl_module, CiaganModule)

    def render(self, pl_module: pl.LightningModule, batch: dict[str, torch.Tensor]) -> np.ndarray:
        targets = spread_targets(pl_module.hparams.num_identities, self.num_targets)
        return to_uint8_image(pl_module.sample_grid(batch, targets))
