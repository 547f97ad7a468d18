"""What the three VQGAN training modules share: their step counter, optimizer steps, logging
and the checkpoint bundle.

Every module uses Lightning's manual optimization and counts its own steps (`self.step`, one
per training batch, saved in checkpoints): schedules such as the discriminator start key on
it, never on `trainer.global_step` (which advances once per optimizer step). Each checkpoint
also carries, under `deid_vqgan`, a bundle in our checkpoint format (`vqgan.checkpoint`) built
from the very tensors of Lightning's `state_dict` (stored once), so `vqgan.load_checkpoint`
reads a training checkpoint like a converted official one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from vqgan.checkpoint import FORMAT, LIGHTNING_KEY, VERSION

STEP_KEY = "vqgan_step"
LossFn = Callable[[], tuple[Tensor, dict[str, Tensor]]]


def optimizer_config(defaults: Mapping[str, Any], given: Mapping[str, Any] | None) -> dict:
    """`defaults` updated with the config's optimizer mapping (a `_target_` + its options, plus
    `scale_lr`: multiply lr by batch size x processes, taming's rule)."""
    return {**dict(defaults), **dict(given or {})}


def condition_meta(num_labels: int, crop: Mapping[str, Any] | None) -> dict[str, Any]:
    """How condition label maps are made, for inference (the anonymizer) to reproduce."""
    labels = dict((crop or {}).get("labels") or {})
    return {
        "num_labels": int(num_labels),
        "kind": labels.get("kind", "person" if num_labels == 2 else "cocostuff"),
        "background_label": 0,
        "person_label": 1,
    }


class StageModule(pl.LightningModule):
    """Base of the VQGAN training modules (module docstring). Subclasses name their networks
    in `bundle_stages()` and implement `training_step` with `optimize`."""

    def __init__(
        self,
        image_size: int,
        num_labels: int,
        batch_size: int,
        crop: Mapping[str, Any] | None,
        optimizer: Mapping[str, Any],
        seed: int,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.image_size = int(image_size)
        self.num_labels = int(num_labels)
        self.batch_size = int(batch_size)
        self.crop = dict(crop or {})
        self.optimizer_config = dict(optimizer)
        self.seed = int(seed)
        self.step = 0
        self.last_logs: dict[str, Tensor] = {}  # detached; read without a device sync per step

    # ------------------------------------------------------------------ optimizers
    def learning_rate(self) -> float:
        """The configured lr, times batch size x processes when `scale_lr` (taming's rule)."""
        lr = float(self.optimizer_config.get("lr", 1e-4))
        if self.optimizer_config.get("scale_lr", False):
            world = self.trainer.world_size if self._trainer is not None else 1
            lr *= self.batch_size * world
        return lr

    def build_optimizer(self, params: Any) -> torch.optim.Optimizer:
        spec = {k: v for k, v in self.optimizer_config.items() if k != "scale_lr"}
        spec["lr"] = self.learning_rate()
        return hydra.utils.instantiate(spec, params, _convert_="all")

    def optimize(self, optimizer: Any, loss_fn: LossFn | None) -> dict[str, Tensor]:
        """One optimizer step on `loss_fn()`'s loss, with only this optimizer's parameters
        taking gradients; `loss_fn=None` steps without gradients (a no-op for Adam), which
        keeps the optimizer-step count per batch constant."""
        self.toggle_optimizer(optimizer)
        optimizer.zero_grad(set_to_none=True)
        logs: dict[str, Tensor] = {}
        if loss_fn is not None:
            loss, logs = loss_fn()
            self.manual_backward(loss)
        optimizer.step()
        self.untoggle_optimizer(optimizer)
        return logs

    def finish_step(self, logs: dict[str, Tensor], batch_size: int) -> None:
        """Advance the step counter and log (the step counter too)."""
        self.step += 1
        logs["step"] = torch.tensor(float(self.step))
        self.log_dict(logs, on_step=True, prog_bar=False, batch_size=batch_size)
        self.last_logs = {k: v.detach() for k, v in logs.items()}

    def gather_rows(self, rows: Tensor) -> Tensor:
        """[N, C] rows of every DDP process, concatenated (this process's alone without DDP)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return rows
        return self.all_gather(rows).reshape(-1, rows.shape[-1])

    def reduce_sum(self, values: Tensor) -> Tensor:
        if self._trainer is None or self.trainer.world_size == 1:
            return values
        return self.trainer.strategy.reduce(values, reduce_op="sum")

    # ------------------------------------------------------------------ checkpoints
    def bundle_stages(self) -> dict[str, nn.Module]:
        """Bundle stage name ("first_stage", ...) -> the submodule holding that network."""
        raise NotImplementedError

    def bundle_meta(self) -> dict[str, Any]:
        return {
            "trained_by": "deid",
            "module": type(self).__name__,
            "step": self.step,
            "image_size": self.image_size,
            "condition": condition_meta(self.num_labels, self.crop),
            "crop": self.crop,
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[STEP_KEY] = self.step
        state = checkpoint["state_dict"]
        names = {id(module): name for name, module in self.named_modules()}
        bundle: dict[str, Any] = {"format": FORMAT, "version": VERSION}
        for stage in ("first_stage", "cond_stage", "transformer", "discriminator"):
            module = self.bundle_stages().get(stage)
            if module is None:
                bundle[stage] = None
                continue
            prefix = names[id(module)] + "."
            weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            bundle[stage] = {"config": module.config.to_dict(), "state_dict": weights}
        bundle["meta"] = self.bundle_meta()
        checkpoint[LIGHTNING_KEY] = bundle

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.step = int(checkpoint.get(STEP_KEY, 0))
