"""CIAGAN generator (paper supplement, Tables 5 and 7).

Encoder: the landmark image and the masked face (3 + 3 channels) go through residual down
blocks to a 4x4 bottleneck. Identity branch (Table 7): the target identity, one-hot, goes
through 7 x (Linear + LeakyReLU 0.2), is reshaped to a 4x4 map and through 3 x (3x3 conv +
LeakyReLU + IN). Both are concatenated, fused by a 3x3 conv + ReLU + IN, refined by residual
blocks and decoded by residual up blocks back to the image size; a last 3x3 conv gives 3 linear
channels. `inpaint` feeds it and composites `background + out * mask`, in training and at
inference alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ciagan.nets.blocks import (
    ResBlock,
    ResBlockDown,
    ResBlockUp,
    check_image_size,
    instance_norm,
    make_conv,
)
from deid.errors import unknown_name


class Generator(nn.Module):
    """Encoder-decoder with the identity embedding injected at the 4x4 bottleneck.

    `skip_connections=True` concatenates the encoder output of matching resolution to the input
    of every decoder up block that starts above 4x4 (at 4x4 the fused bottleneck already holds
    the encoder's 4x4 features). The official code has no skips despite the paper's "U-Net".

    As in the official code, the output conv and the identity MLP are not spectrally
    normalised; every other conv is when `spectral_norm` is True.
    """

    def __init__(
        self,
        num_identities: int,
        image_size: int = 128,
        in_channels: int = 6,
        channels: Sequence[int] = (32, 64, 128, 256, 256),
        up_channels: Sequence[int] = (256, 128, 64, 32, 16),
        bottleneck_channels: int = 256,
        num_res_blocks: int = 4,
        id_hidden: Sequence[int] = (256, 256, 256, 256, 512, 512, 512),
        id_channels: Sequence[int] = (64, 128, 256),
        skip_connections: bool = False,
        spectral_norm: bool = True,
        padding_mode: str = "reflect",
        preactivation: bool = False,
        fuse_relu: bool = True,
        output_padding: str | None = None,
        pixel_range: str = "signed",
    ) -> None:
        """The last four options exist for converted official weights (`ciagan.convert_official`:
        `preactivation=True`, `fuse_relu=False`, `output_padding="zeros"`, `pixel_range="unit"`):
        ReLU on every encoder block's input, no ReLU between the bottleneck fusion conv and its
        InstanceNorm, zero padding in the output conv, and images in [0, 1] instead of [-1, 1]
        (`inpaint` converts). The defaults are this project's generator."""
        super().__init__()
        if pixel_range not in PIXEL_RANGES:
            raise unknown_name("pixel_range", pixel_range, PIXEL_RANGES, ValueError)
        self.pixel_range = pixel_range
        channels, up_channels = tuple(channels), tuple(up_channels)
        id_hidden, id_channels = tuple(id_hidden), tuple(id_channels)
        if num_identities < 1:
            raise ValueError(f"Generator: num_identities must be >= 1, got {num_identities}")
        if not channels:
            raise ValueError("Generator: channels must not be empty")
        check_image_size(image_size, len(channels), "Generator", "channels")
        check_image_size(image_size, len(up_channels), "Generator", "up_channels")
        if not id_hidden or id_hidden[-1] % 16:
            raise ValueError(
                "Generator: id_hidden must be non-empty and its last width divisible by 16 "
                f"(it is reshaped to (C, 4, 4)), got {id_hidden}"
            )
        self.num_identities = num_identities
        self.image_size = image_size
        self.in_channels = in_channels
        self.skip_connections = skip_connections
        sn, pm = spectral_norm, padding_mode

        self.encoder = nn.ModuleList()
        prev = in_channels
        for ch in channels:
            self.encoder.append(
                ResBlockDown(
                    prev, ch, spectral_norm=sn, padding_mode=pm, preactivation=preactivation
                )
            )
            prev = ch

        # Identity branch (Table 7).
        mlp: list[nn.Module] = []
        prev = num_identities
        for width in id_hidden:
            mlp += [nn.Linear(prev, width), nn.LeakyReLU(0.2)]
            prev = width
        self.id_mlp = nn.Sequential(*mlp)
        self.id_map_channels = id_hidden[-1] // 16
        self.id_conv = nn.Sequential()
        prev = self.id_map_channels
        for ch in id_channels:
            self.id_conv.append(
                nn.Sequential(
                    make_conv(prev, ch, 3, spectral_norm=sn, padding_mode=pm),
                    nn.LeakyReLU(0.2),
                    instance_norm(ch),
                )
            )
            prev = ch
        id_out = prev

        # Bottleneck: Table 5 says "3x3 conv + ReLU"; the official code fuses with conv + IN.
        # We do both (conv -> ReLU -> IN), the IN keeping the residual stream normalised;
        # `fuse_relu=False` is the official conv -> IN (the Identity keeps the layer indices).
        self.fuse = nn.Sequential(
            make_conv(
                channels[-1] + id_out, bottleneck_channels, 3, spectral_norm=sn, padding_mode=pm
            ),
            nn.ReLU() if fuse_relu else nn.Identity(),
            instance_norm(bottleneck_channels),
        )
        self.res_blocks = nn.Sequential(
            *(
                ResBlock(bottleneck_channels, spectral_norm=sn, padding_mode=pm)
                for _ in range(num_res_blocks)
            )
        )

        self.decoder = nn.ModuleList()
        prev = bottleneck_channels
        n = len(channels)
        for i, ch in enumerate(up_channels):
            skip = channels[n - 1 - i] if skip_connections and i > 0 else 0
            self.decoder.append(ResBlockUp(prev + skip, ch, spectral_norm=sn, padding_mode=pm))
            prev = ch
        self.to_rgb = make_conv(prev, 3, 3, spectral_norm=False, padding_mode=output_padding or pm)

    def one_hot(self, identity: Tensor) -> Tensor:
        """(B,) class indices or (B, num_identities) one-hot/soft codes -> float (B, N).

        Out-of-range indices raise in `F.one_hot`.
        """
        dtype = self.id_mlp[0].weight.dtype
        if not torch.is_floating_point(identity):
            if identity.dim() != 1:
                raise ValueError(
                    f"identity indices must have shape (B,), got {tuple(identity.shape)}"
                )
            return F.one_hot(identity.long(), self.num_identities).to(dtype)
        if identity.dim() != 2 or identity.shape[1] != self.num_identities:
            raise ValueError(
                f"float identity codes must have shape (B, {self.num_identities}), "
                f"got {tuple(identity.shape)}"
            )
        return identity.to(dtype)

    def identity_embedding(self, identity: Tensor) -> Tensor:
        """Table 7: identity (indices or codes) -> (B, id_channels[-1], 4, 4)."""
        code = self.id_mlp(self.one_hot(identity))
        return self.id_conv(code.view(code.shape[0], self.id_map_channels, 4, 4))

    def forward(self, condition: Tensor, masked: Tensor, identity: Tensor) -> Tensor:
        """condition (pose image, or the face for `condition="face"`) and masked face,
        (B, 3, H, W) each -> (B, 3, H, W)."""
        x = torch.cat([condition, masked], dim=1)
        if x.shape[1:] != (self.in_channels, self.image_size, self.image_size):
            raise ValueError(
                f"Generator expects condition+masked of {self.in_channels} channels at "
                f"{self.image_size}x{self.image_size}, got {tuple(x.shape[1:])}"
            )
        features = []
        for block in self.encoder:
            x = block(x)
            features.append(x)
        ident = self.identity_embedding(identity)
        if ident.shape[0] != x.shape[0]:
            raise ValueError(
                f"batch size mismatch: {x.shape[0]} images, {ident.shape[0]} identities"
            )
        x = self.res_blocks(self.fuse(torch.cat([x, ident], dim=1)))
        for i, block in enumerate(self.decoder):
            if self.skip_connections and i > 0:
                x = torch.cat([x, features[-1 - i]], dim=1)
            x = block(x)
        return self.to_rgb(x)


CONDITIONS = ("pose", "face")  # what the generator sees besides the background
PIXEL_RANGES = ("signed", "unit")  # images in [-1, 1] (ours) | [0, 1] (the official weights)
LEGACY_CONDITIONS = {"landmarks": "pose"}  # the name checkpoints made before the rename carry


def condition_name(condition: str) -> str:
    """`condition` as one of `CONDITIONS` (old checkpoints say "landmarks" for "pose")."""
    condition = LEGACY_CONDITIONS.get(condition, condition)
    if condition not in CONDITIONS:
        raise unknown_name("condition", condition, CONDITIONS, ValueError)
    return condition


def inpaint(
    generator: Generator | Any,
    image: Tensor,
    pose: Tensor,
    mask: Tensor,
    target: Tensor,
    condition: str = "pose",
) -> tuple[Tensor, Tensor]:
    """(composite, raw): the generated region inside `mask`, the source background outside.

    `generator`: a `Generator`, or anything that calls like one and has its `pixel_range`
    (`ciagan.traced.TracedGenerator`).

    image (B, 3, S, S) in [-1, 1]; pose (B, 3, S, S) and mask (B, 1, S, S) in {0, 1}; target
    (B,) identity labels. The generator sees the background (`image` outside the mask) and the
    pose image (the Table-1 ablation `condition="face"`: the masked-in face instead).
    """
    if generator.pixel_range == "unit":  # official weights: images in [0, 1] in and out
        unit = (image + 1) / 2
        given = pose if condition == "pose" else unit * mask
        raw = generator(given, unit * (1 - mask), target) * 2 - 1
        return image * (1 - mask) + raw * mask, raw
    masked = image * (1 - mask)
    given = pose if condition == "pose" else image * mask
    raw = generator(given, masked, target)
    return masked + raw * mask, raw
