"""CIAGAN identity guidance network.

The paper: "The network has the same architecture as the siamese network that we use for
identity guidance" (Table 6: residual down blocks + 2 FC layers), input a 3-channel face.
The official code uses a CIFAR-style ResNet-18 with BatchNorm instead; we follow the paper.

Normalisation: affine InstanceNorm inside the residual blocks (`norm=True`). It is per sample,
so it behaves the same at batch 8 or 16, in train and eval mode, and under DDP without
SyncBatchNorm; and it keeps no running statistics, so evaluating the network on generated
faces during the generator's step cannot contaminate statistics used on real faces (a real
hazard with BatchNorm in a network that serves as a loss).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn import functional as F

from ciagan.nets.blocks import make_linear
from ciagan.nets.discriminator import DownTrunk
from deid.errors import unknown_name

KINDS = ("siamese", "classifier")


class IdentityNet(nn.Module):
    """Face (B, 3, H, W) -> embedding (siamese) or class logits (classifier).

    kind="siamese": forward -> (B, embedding_dim) un-normalised embedding (for the contrastive
    loss); `embed` -> the same, L2-normalised (for Proxy-NCA and retrieval). `num_classes` is
    recorded (e.g. for the number of Proxy-NCA proxies) but does not shape the network.
    kind="classifier" (Table 1 ablation): the last FC layer outputs (B, num_classes) logits;
    `embed` -> the L2-normalised penultimate features (B, hidden).
    """

    def __init__(
        self,
        num_classes: int,
        image_size: int = 128,
        kind: str = "siamese",
        embedding_dim: int = 512,
        channels: Sequence[int] = (32, 64, 128, 256, 512),
        hidden: int = 1024,
        spectral_norm: bool = False,
        norm: bool = True,
        padding_mode: str = "reflect",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise unknown_name("IdentityNet kind", kind, KINDS, ValueError)
        if num_classes < 1:
            raise ValueError(f"IdentityNet: num_classes must be >= 1, got {num_classes}")
        self.kind = kind
        self.num_classes = num_classes
        self.trunk = DownTrunk(
            in_channels,
            image_size,
            channels,
            hidden,
            spectral_norm=spectral_norm,
            norm=norm,
            padding_mode=padding_mode,
            owner="IdentityNet",
        )
        out = embedding_dim if kind == "siamese" else num_classes
        self.head = make_linear(hidden, out, spectral_norm=spectral_norm)
        self.output_dim = out
        self.embedding_dim = embedding_dim if kind == "siamese" else hidden

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))

    def embed(self, x: Tensor) -> Tensor:
        """L2-normalised (B, self.embedding_dim) embedding."""
        features = self.forward(x) if self.kind == "siamese" else self.trunk(x)
        return F.normalize(features, dim=1)
