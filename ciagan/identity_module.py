"""Identity-network pre-training with Proxy-NCA (the paper's step the official code lacks).

The network learns from real faces of the training identities; validation reports the
metric-learning Recall@1 (protocols.md 2) on the validation split, which for the CIAGAN
CelebA split holds identities never seen in training. The classifier variant (Table-1
ablation) trains with cross-entropy instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from ciagan import losses
from ciagan.module import DEFAULT_OPTIMIZER
from ciagan.nets import IdentityNet
from deid_eval.metrics import ReIdRecall

DEFAULT_PROXY = {"scale": 3.0, "include_positive": True, "lr_scale": 100.0}


class IdentityPretrainModule(pl.LightningModule):
    """Proxy-NCA (siamese) or cross-entropy (classifier) training of `IdentityNet`."""

    def __init__(
        self,
        num_identities: int,
        image_size: int = 128,
        identity: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        proxy: Mapping[str, float] | None = None,
        crop: Mapping[str, Any] | None = None,
    ) -> None:
        """`crop`: how the training faces were cropped (from the datamodule), kept in the
        checkpoint so the network embeds faces cut alike (`ciagan.embedder`)."""
        super().__init__()
        self.save_hyperparameters()
        self.identity_net = IdentityNet(
            num_identities, image_size=image_size, **dict(identity or {})
        )
        self.proxy = {**DEFAULT_PROXY, **dict(proxy or {})}
        self.optimizer_config = {**DEFAULT_OPTIMIZER, **dict(optimizer or {})}
        if self.identity_net.kind == "siamese":
            width = self.identity_net.embedding_dim
            self.proxies = nn.Parameter(torch.randn(num_identities, width) / width**0.5)
        self.val_recall = ReIdRecall(ks=(1,), mode="clean")

    def loss(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        output = self.identity_net(batch["image"])
        if self.identity_net.kind == "siamese":
            return losses.proxy_nca_loss(
                output,
                batch["label"],
                self.proxies,
                scale=self.proxy["scale"],
                include_positive=bool(self.proxy["include_positive"]),
            )
        return losses.classification_loss(output, batch["label"])

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        loss, logs = self.loss(batch)
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, batch_size=len(batch["image"]))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        embeddings = self.identity_net.embed(batch["image"])
        # every rank sees the whole validation split (the datamodule does not shard it): the
        # item index lets the metric drop the other ranks' copies after the DDP gather
        self.val_recall.update(embeddings, batch["label"], batch["index"], role="gallery")

    def on_validation_epoch_end(self) -> None:
        scores = self.val_recall.compute()
        self.log("val/recall@1", scores["recall@1"], prog_bar=True)
        self.log("val/chance", scores["chance"])
        self.val_recall.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        config = dict(self.optimizer_config)
        groups: list[dict[str, Any]] = [{"params": list(self.identity_net.parameters())}]
        if hasattr(self, "proxies"):
            lr = float(config.get("lr", 1e-3)) * float(self.proxy["lr_scale"])
            groups.append({"params": [self.proxies], "lr": lr})
        return hydra.utils.instantiate(config, groups, _convert_="all")
