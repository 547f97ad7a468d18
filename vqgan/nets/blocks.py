"""Building blocks of taming's convolutional autoencoder, with its parameter names.

Why taming's names: official VQGAN checkpoints then load by key, without a renaming table.
Every block keeps the official arithmetic order (GroupNorm -> swish -> conv; attention as
scaled q·k, softmax, weighted sum of v) so converted weights reproduce the official outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

GROUPS = 32
GROUP_NORM_EPS = 1e-6


def normalize(channels: int) -> nn.GroupNorm:
    """GroupNorm(32) with taming's eps 1e-6 and affine parameters."""
    return nn.GroupNorm(num_groups=GROUPS, num_channels=channels, eps=GROUP_NORM_EPS, affine=True)


def swish(x: Tensor) -> Tensor:
    """x * sigmoid(x), written out as taming does so results match it bit for bit."""
    return x * torch.sigmoid(x)


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)


def conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)


class ResnetBlock(nn.Module):
    """norm -> swish -> conv -> norm -> swish -> dropout -> conv, plus the input.

    When the channel count changes the input goes through a 1x1 `nin_shortcut` (taming's
    default `conv_shortcut=False` path; no official VQGAN uses the 3x3 variant).
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, dropout: float = 0.0):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.norm1 = normalize(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels)
        self.norm2 = normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv3x3(out_channels, out_channels)
        if in_channels != out_channels:
            self.nin_shortcut = conv1x1(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions of a feature map, with 1x1 q/k/v/proj."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = normalize(channels)
        self.q = conv1x1(channels, channels)
        self.k = conv1x1(channels, channels)
        self.v = conv1x1(channels, channels)
        self.proj_out = conv1x1(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, height, width = q.shape
        q = q.reshape(b, c, height * width).permute(0, 2, 1)  # b, hw, c
        k = k.reshape(b, c, height * width)  # b, c, hw
        weights = torch.bmm(q, k) * (int(c) ** (-0.5))  # b, hw(query), hw(key)
        weights = F.softmax(weights, dim=2)
        v = v.reshape(b, c, height * width)
        out = torch.bmm(v, weights.permute(0, 2, 1)).reshape(b, c, height, width)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Stride-2 3x3 conv after zero padding right and bottom only (taming's (0, 1, 0, 1))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv3x3(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
