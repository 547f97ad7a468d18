"""Training modules of the two VQ stages: the image VQGAN and the segmentation VQ model.

`VQGANModule` (the first stage): autoencoder + PatchGAN discriminator, two Adam optimizers
(betas (0.5, 0.9)) stepped alternately each batch: the autoencoder on L1 + perceptual +
codebook + adaptive-weight GAN loss, then the discriminator on the detached reconstruction.
The discriminator (and the GAN term) act from `loss.disc_start` of the module's own step
counter; before that its optimizer steps without gradients.

`SegmentationVQModule` (the condition stage): the same autoencoder on one-hot label maps,
BCE + codebook loss, no discriminator.

The quantization always runs in float32, also under bf16 autocast: nearest-code search on
bf16 distances would pick wrong codes. Codebook usage (perplexity, share of codes used per
batch) is logged every step; `codebook` enables data-dependent init and dead-code restarts
(`vqgan.codebook`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from vqgan import losses
from vqgan.codebook import CodebookKeeper, CodebookSchedule
from vqgan.data import colorize, onehot
from vqgan.nets import DiscriminatorConfig, NLayerDiscriminator, Quantized, VQAutoencoder, VQConfig
from vqgan.perceptual import build_perceptual
from vqgan.stage_module import StageModule, optimizer_config

ADAM = {"_target_": "torch.optim.Adam", "lr": 4.5e-6, "betas": [0.5, 0.9], "scale_lr": True}
DEFAULT_LOSS = {
    "pixel_weight": 1.0,
    "perceptual": "lpips_vgg",  # lpips_vgg | fid_inception | none (vqgan.perceptual)
    "perceptual_weight": 1.0,
    "codebook_weight": 1.0,
    "disc_start": 10000,  # own steps
    "disc_weight": 0.8,
    "gan": "hinge",  # hinge | vanilla
}
SEGMENTATION_LOSS = {"codebook_weight": 1.0}
COUNTS_KEY = "vqgan_code_counts"


def vq_config(vq: Mapping[str, Any] | None, image_size: int, channels: int) -> VQConfig:
    """The autoencoder's config: `vq` sizes at the training resolution, `channels` in and out."""
    values = {**dict(vq or {}), "resolution": image_size}
    values.update(in_channels=channels, out_channels=channels)
    return VQConfig.from_dict(values)


class VQStageModule(StageModule):
    """Shared by both VQ stages: the autoencoder, fp32 quantization and codebook upkeep."""

    def __init__(
        self,
        channels: int,
        image_size: int,
        num_labels: int,
        batch_size: int,
        crop: Mapping[str, Any] | None,
        vq: Mapping[str, Any] | None,
        optimizer: Mapping[str, Any] | None,
        codebook: Mapping[str, Any] | None,
        seed: int,
    ) -> None:
        super().__init__(
            image_size, num_labels, batch_size, crop, optimizer_config(ADAM, optimizer), seed
        )
        self.autoencoder = VQAutoencoder(vq_config(vq, image_size, channels))
        # how often each code was chosen since the last restart check: this process's own
        # count (a registered buffer would be overwritten by rank 0's under DDP), checkpointed
        self.code_counts = torch.zeros(self.autoencoder.config.n_embed, dtype=torch.long)
        self.keeper = CodebookKeeper(CodebookSchedule.from_mapping(codebook), self.seed)

    def reconstruct(self, x: Tensor, upkeep: bool = False) -> tuple[Tensor, Quantized, dict]:
        """(output, quantization, codebook logs); `upkeep` applies the codebook schedule first
        (training steps only)."""
        ae = self.autoencoder
        if self.code_counts.device != x.device:
            self.code_counts = self.code_counts.to(x.device)
        latents = ae.quant_conv(ae.encoder(x))
        with torch.autocast(device_type=latents.device.type, enabled=False):
            latents = latents.float()
            logs: dict[str, Tensor] = {}
            if upkeep:
                logs = self.keeper.before_quantize(
                    ae.quantize,
                    latents,
                    self.code_counts,
                    self.step,
                    self.gather_rows,
                    self.reduce_sum,
                )
            quantized = ae.quantize(latents)
        if upkeep:
            self.code_counts += torch.bincount(
                quantized.indices.flatten(), minlength=ae.config.n_embed
            )
        output = ae.decode(quantized.z_q).float()
        return output, quantized, logs

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[COUNTS_KEY] = self.code_counts.detach().cpu()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if COUNTS_KEY in checkpoint:
            self.code_counts = checkpoint[COUNTS_KEY].clone().to(self.code_counts.device)

    @staticmethod
    def usage_logs(quantized: Quantized) -> dict[str, Tensor]:
        return {
            "codebook/perplexity": quantized.perplexity.detach(),
            "codebook/usage": quantized.usage.detach(),
        }


class VQGANModule(VQStageModule):
    """The image first stage (module docstring). Batches need `image` [B, 3, S, S] in [-1, 1]."""

    def __init__(
        self,
        image_size: int = 256,
        num_labels: int = 2,
        batch_size: int = 8,
        crop: Mapping[str, Any] | None = None,
        vq: Mapping[str, Any] | None = None,
        discriminator: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        codebook: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        """`image_size`, `num_labels`, `batch_size`, `crop` come from the datamodule."""
        super().__init__(3, image_size, num_labels, batch_size, crop, vq, optimizer, codebook, seed)
        self.save_hyperparameters()
        self.loss_config = {**DEFAULT_LOSS, **dict(loss or {})}
        self.discriminator = NLayerDiscriminator(
            DiscriminatorConfig.from_dict({"in_channels": 3, **dict(discriminator or {})})
        )
        # frozen and never saved: kept out of the module tree (and out of DDP)
        self._perceptual = [build_perceptual(str(self.loss_config["perceptual"]))]

    @property
    def perceptual(self) -> nn.Module:
        module = self._perceptual[0]
        if next(module.buffers(), torch.empty(0, device=self.device)).device != self.device:
            module.to(self.device)
        return module

    @property
    def perceptual_kind(self) -> str:
        return str(self._perceptual[0].name)

    def discriminator_active(self) -> bool:
        return losses.discriminator_active(self.step, int(self.loss_config["disc_start"]))

    def generator_loss(self, x: Tensor, xrec: Tensor, quantized: Quantized) -> tuple[Tensor, dict]:
        """The autoencoder's loss (rec + adaptive-weight GAN + codebook) at this step."""
        cfg = self.loss_config
        kind = self.perceptual_kind
        rec, logs = losses.reconstruction_loss(
            x,
            xrec,
            None if kind == "none" else self.perceptual,
            pixel_weight=float(cfg["pixel_weight"]),
            perceptual_weight=float(cfg["perceptual_weight"]),
        )
        if self.discriminator_active():
            logits_fake = self.discriminator(xrec)
        else:
            logits_fake = torch.zeros((), device=x.device)
        loss, gan_logs = losses.vqgan_generator_loss(
            rec,
            quantized.loss,
            logits_fake,
            self.autoencoder.last_layer,
            step=self.step,
            disc_start=int(cfg["disc_start"]),
            disc_weight=float(cfg["disc_weight"]),
            codebook_weight=float(cfg["codebook_weight"]),
            gan=str(cfg["gan"]),
        )
        return loss, {**logs, **gan_logs}

    def discriminator_loss(self, x: Tensor, xrec: Tensor) -> tuple[Tensor, dict]:
        """The discriminator's loss on real images and detached reconstructions."""
        return losses.vqgan_discriminator_loss(
            self.discriminator(x.detach()),
            self.discriminator(xrec.detach()),
            step=self.step,
            disc_start=int(self.loss_config["disc_start"]),
            gan=str(self.loss_config["gan"]),
        )

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        opt_ae, opt_d = self.optimizers()
        x = batch["image"]
        xrec, quantized, logs = self.reconstruct(x, upkeep=True)
        g_logs = self.optimize(opt_ae, lambda: self.generator_loss(x, xrec, quantized))
        d_fn = (lambda: self.discriminator_loss(x, xrec)) if self.discriminator_active() else None
        d_logs = self.optimize(opt_d, d_fn)
        logs.update({f"autoencoder/{k}": v for k, v in g_logs.items()})
        logs.update({f"discriminator/{k}": v for k, v in d_logs.items()})
        logs.update(self.usage_logs(quantized))
        self.finish_step(logs, len(x))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            self.build_optimizer(self.autoencoder.parameters()),
            self.build_optimizer(self.discriminator.parameters()),
        ]

    def bundle_stages(self) -> dict[str, nn.Module]:
        return {"first_stage": self.autoencoder, "discriminator": self.discriminator}

    def bundle_meta(self) -> dict[str, Any]:
        return {**super().bundle_meta(), "perceptual": self.perceptual_kind}

    @torch.no_grad()
    def sample_grid(self, batch: Mapping[str, Tensor]) -> Tensor:
        """[3, H, W] in [-1, 1]: inputs on the top row, their reconstructions below."""
        was_training = self.training
        self.eval()
        x = batch["image"].to(self.device)
        xrec = self.reconstruct(x)[0].clamp(-1, 1)
        self.train(was_training)
        return torch.cat([torch.cat(list(x), dim=2), torch.cat(list(xrec), dim=2)], dim=1)


class SegmentationVQModule(VQStageModule):
    """The segmentation condition stage (module docstring). Batches need `labels` [B, S, S]."""

    def __init__(
        self,
        image_size: int = 256,
        num_labels: int = 183,
        batch_size: int = 8,
        crop: Mapping[str, Any] | None = None,
        vq: Mapping[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        codebook: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        """`image_size`, `num_labels`, `batch_size`, `crop` come from the datamodule."""
        super().__init__(
            num_labels, image_size, num_labels, batch_size, crop, vq, optimizer, codebook, seed
        )
        self.save_hyperparameters()
        self.loss_config = {**SEGMENTATION_LOSS, **dict(loss or {})}

    def segmentation_loss(
        self, target: Tensor, logits: Tensor, quantized: Quantized
    ) -> tuple[Tensor, dict]:
        loss, logs = losses.segmentation_loss(
            logits,
            target,
            quantized.loss,
            codebook_weight=float(self.loss_config["codebook_weight"]),
        )
        return loss, logs

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        opt = self.optimizers()
        labels = batch["labels"]
        target = onehot(labels, self.num_labels)
        logits, quantized, logs = self.reconstruct(target, upkeep=True)
        step_logs = self.optimize(opt, lambda: self.segmentation_loss(target, logits, quantized))
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        logs.update({f"segmentation/{k}": v for k, v in step_logs.items()})
        logs["segmentation/pixel_accuracy"] = accuracy
        logs.update(self.usage_logs(quantized))
        self.finish_step(logs, len(labels))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.build_optimizer(self.autoencoder.parameters())

    def bundle_stages(self) -> dict[str, nn.Module]:
        return {"cond_stage": self.autoencoder}

    @torch.no_grad()
    def sample_grid(self, batch: Mapping[str, Tensor]) -> Tensor:
        """[3, H, W] in [-1, 1]: label maps on the top row, their reconstructions below."""
        was_training = self.training
        self.eval()
        labels = batch["labels"].to(self.device)
        logits = self.reconstruct(onehot(labels, self.num_labels))[0]
        self.train(was_training)
        rows = [colorize(labels, self.num_labels), colorize(logits.argmax(1), self.num_labels)]
        return torch.cat([torch.cat(list(row), dim=2) for row in rows], dim=1)
