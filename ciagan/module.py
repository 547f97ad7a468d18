"""CIAGAN GAN training: generator, pose-conditioned LSGAN discriminator, identity network.

One iteration = (identity step) + (discriminator step) + (generator step), each on its own
schedule (`schedule.*_every` iterations), with Lightning's manual optimization. The generator
runs forward once per iteration; the discriminator step uses its output detached. Schedules key
on `self.iteration` (our own counter, saved in checkpoints), not `trainer.global_step`, which
advances once per optimizer step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from torch import Tensor

from ciagan import losses
from ciagan.nets import Discriminator, Generator, IdentityNet, inpaint
from ciagan.nets.generator import CONDITIONS, LEGACY_CONDITIONS, condition_name
from deid.checkpoints import load_checkpoint, submodule_weights
from deid.errors import DeidError, unknown_name

DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": 1e-5, "betas": [0.5, 0.9]}
DEFAULT_SCHEDULE = {"identity_every": 1, "discriminator_every": 1, "generator_every": 1}
DEFAULT_LOSS = {"adversarial": 1.0, "identity": 1.0, "reconstruction": 0.0, "margin": 3.0}

LossFn = Callable[[], tuple[Tensor, dict[str, Tensor]]]


IDENTITY_PRETRAIN_COMMAND = "python train.py experiment=ciagan_identity_pretrain"


def load_identity_weights(net: IdentityNet, path: str | Path) -> None:
    """Initialise `net` from an identity pre-training checkpoint (weights only)."""
    state = load_checkpoint(path, "identity network", IDENTITY_PRETRAIN_COMMAND)
    weights = submodule_weights(state, "identity_net")
    if not weights:
        raise DeidError(f"{path}: no identity_net.* weights in this checkpoint")
    try:
        net.load_state_dict(weights)
    except RuntimeError as err:
        raise DeidError(
            f"{path}: the identity network does not match this config ({err.args[0][:200]})"
        ) from None


class CiaganModule(pl.LightningModule):
    """The CIAGAN GAN. `condition="face"` is the Table-1 ablation feeding the masked-in face
    instead of the pose image (landmarks, or the silhouette in the body variant);
    `identity.kind="classifier"` the classification ablation."""

    def __init__(
        self,
        num_identities: int,
        image_size: int = 128,
        generator: Mapping[str, Any] | None = None,
        discriminator: Mapping[str, Any] | None = None,
        identity: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        schedule: Mapping[str, int] | None = None,
        loss: Mapping[str, float] | None = None,
        condition: str = "pose",
        identity_init: str | None = None,
        crop: Mapping[str, Any] | None = None,
    ) -> None:
        """`crop`: how the training data was cropped (the preprocessing folder's settings,
        from the datamodule), kept in the checkpoint so inference cuts its inputs alike."""
        super().__init__()
        if LEGACY_CONDITIONS.get(condition, condition) not in CONDITIONS:
            raise unknown_name("module.condition", condition, CONDITIONS)
        condition = condition_name(condition)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = Generator(num_identities, image_size=image_size, **dict(generator or {}))
        self.discriminator = Discriminator(
            in_channels=6, image_size=image_size, **dict(discriminator or {})
        )
        self.identity_net = IdentityNet(
            num_identities, image_size=image_size, **dict(identity or {})
        )
        if identity_init:
            load_identity_weights(self.identity_net, identity_init)
        self.schedule = {**DEFAULT_SCHEDULE, **dict(schedule or {})}
        self.weights = {**DEFAULT_LOSS, **dict(loss or {})}
        self.optimizer_config = {**DEFAULT_OPTIMIZER, **dict(optimizer or {})}
        self.condition = condition
        self.iteration = 0
        self.last_logs: dict[str, Tensor] = {}  # detached; read them without a device sync per step

    @property
    def siamese(self) -> bool:
        return self.identity_net.kind == "siamese"

    # ------------------------------------------------------------------ forward
    def generate(
        self, image: Tensor, pose: Tensor, mask: Tensor, target: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(composite, raw): the generated face inside `mask`, the source background outside
        (`ciagan.nets.inpaint`, which inference uses too)."""
        return inpaint(self.generator, image, pose, mask, target, self.condition)

    def forward(self, image: Tensor, pose: Tensor, mask: Tensor, target: Tensor) -> Tensor:
        return self.generate(image, pose, mask, target)[0]

    def critic(self, image: Tensor, pose: Tensor) -> Tensor:
        return self.discriminator(torch.cat([image, pose], dim=1))

    # ------------------------------------------------------------------ losses
    def identity_loss(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Identity-network step on real images: contrastive pairs, or classification."""
        if self.siamese:
            return losses.contrastive_loss(
                self.identity_net(batch["image"]),
                self.identity_net(batch["pair_image"]),
                batch["same"].float(),
                margin=self.weights["margin"],
            )
        return losses.classification_loss(self.identity_net(batch["image"]), batch["label"])

    def discriminator_loss(
        self, batch: Mapping[str, Tensor], fake: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        pose = batch["pose"]
        return losses.lsgan_discriminator_loss(
            self.critic(batch["image"], pose), self.critic(fake.detach(), pose)
        )

    def generator_loss(
        self, batch: Mapping[str, Tensor], fake: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        adversarial, logs = losses.lsgan_generator_loss(self.critic(fake, batch["pose"]))
        if self.siamese:
            same = torch.ones_like(batch["same"], dtype=fake.dtype)
            identity, id_logs = losses.contrastive_loss(
                self.identity_net(fake),
                self.identity_net(batch["target_image"]),
                same,
                margin=self.weights["margin"],
            )
        else:
            identity, id_logs = losses.classification_loss(
                self.identity_net(fake), batch["target_label"]
            )
        total = self.weights["adversarial"] * adversarial + self.weights["identity"] * identity
        logs = {**logs, **{f"identity_{k}": v for k, v in id_logs.items()}}
        if self.weights["reconstruction"] > 0:
            reconstruction, rec_logs = losses.l1_reconstruction_loss(
                fake, batch["image"], batch["mask"]
            )
            total = total + self.weights["reconstruction"] * reconstruction
            logs.update({f"reconstruction_{k}": v for k, v in rec_logs.items()})
        logs["total"] = total.detach()
        return total, logs

    # ------------------------------------------------------------------ training
    def _due(self, name: str) -> bool:
        every = int(self.schedule[f"{name}_every"])
        return every > 0 and self.iteration % every == 0

    def _step(self, optimizer: Any, loss_fn: LossFn) -> dict[str, Tensor]:
        self.toggle_optimizer(optimizer)
        loss, logs = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        self.untoggle_optimizer(optimizer)
        return logs

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        opt_identity, opt_d, opt_g = self.optimizers()
        logs: dict[str, Tensor] = {}
        if self._due("identity"):
            step = self._step(opt_identity, lambda: self.identity_loss(batch))
            logs.update({f"identity/{k}": v for k, v in step.items()})
        run_d, run_g = self._due("discriminator"), self._due("generator")
        if run_d or run_g:
            fake, _ = self.generate(
                batch["image"], batch["pose"], batch["mask"], batch["target_label"]
            )
            if run_d:
                step = self._step(opt_d, lambda: self.discriminator_loss(batch, fake))
                logs.update({f"discriminator/{k}": v for k, v in step.items()})
            if run_g:
                step = self._step(opt_g, lambda: self.generator_loss(batch, fake))
                logs.update({f"generator/{k}": v for k, v in step.items()})
        self.iteration += 1
        logs["iteration"] = torch.tensor(float(self.iteration))
        self.log_dict(logs, on_step=True, prog_bar=False, batch_size=len(batch["image"]))
        self.last_logs = {k: v.detach() for k, v in logs.items()}

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        def build(params: Any) -> torch.optim.Optimizer:
            return hydra.utils.instantiate(self.optimizer_config, params, _convert_="all")

        return [
            build(self.identity_net.parameters()),
            build(self.discriminator.parameters()),
            build(self.generator.parameters()),
        ]

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ciagan_iteration"] = self.iteration

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.iteration = int(checkpoint.get("ciagan_iteration", 0))

    @torch.no_grad()
    def sample_grid(self, batch: Mapping[str, Tensor], targets: list[int]) -> Tensor:
        """(3, H, W) grid in [-1, 1]: per row source | pose | one output per target."""
        was_training = self.training
        self.eval()
        image = batch["image"].to(self.device)
        pose = batch["pose"].to(self.device)
        mask = batch["mask"].to(self.device)
        columns = [image, pose * 2 - 1]
        for target in targets:
            labels = torch.full((len(image),), target, dtype=torch.long, device=self.device)
            columns.append(self.generate(image, pose, mask, labels)[0].clamp(-1, 1))
        self.train(was_training)
        rows = [torch.cat([column[i] for column in columns], dim=2) for i in range(len(image))]
        return torch.cat(rows, dim=1)
