"""taming's Encoder and Decoder (`taming.modules.diffusionmodules.model`), same module tree.

Key names follow the official ones (`conv_in`, `down.{i}.block.{j}`, `down.{i}.attn.{j}`,
`down.{i}.downsample.conv`, `mid.block_1/attn_1/block_2`, `up.{i}...`, `norm_out`,
`conv_out`), so an official state dict loads with `strict=True`. Attention blocks sit at the
levels whose feature-map side is in `attn_resolutions`, exactly as taming decides it.
"""

from __future__ import annotations

from torch import Tensor, nn

from vqgan.nets.blocks import (
    AttnBlock,
    Downsample,
    ResnetBlock,
    Upsample,
    conv3x3,
    normalize,
    swish,
)
from vqgan.nets.config import VQConfig


class _Level(nn.Module):
    """One resolution level: `block` (ResnetBlocks), `attn` (maybe empty), a resampler."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class _Middle(nn.Module):
    """ResnetBlock -> attention -> ResnetBlock at the lowest resolution."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


def _run_level(level: _Level, h: Tensor) -> Tensor:
    for i, block in enumerate(level.block):
        h = block(h)
        if len(level.attn) > 0:
            h = level.attn[i](h)
    return h


class Encoder(nn.Module):
    """Image [B, in_channels, H, W] -> latent [B, z_channels, H/f, W/f]."""

    def __init__(self, config: VQConfig) -> None:
        super().__init__()
        ch, mult = config.ch, config.ch_mult
        self.conv_in = conv3x3(config.in_channels, ch)
        self.down = nn.ModuleList()
        resolution = config.resolution
        block_in = ch
        for i, m in enumerate(mult):
            level = _Level()
            block_out = ch * m
            for _ in range(config.num_res_blocks):
                level.block.append(ResnetBlock(block_in, block_out, config.dropout))
                block_in = block_out
                if resolution in config.attn_resolutions:
                    level.attn.append(AttnBlock(block_in))
            if i != len(mult) - 1:
                level.downsample = Downsample(block_in)
                resolution //= 2
            self.down.append(level)
        self.mid = _Middle(block_in, config.dropout)
        self.norm_out = normalize(block_in)
        self.conv_out = conv3x3(block_in, config.z_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        last = len(self.down) - 1
        for i, level in enumerate(self.down):
            h = _run_level(level, h)
            if i != last:
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent [B, z_channels, h, w] -> image [B, out_channels, h*f, w*f].

    `up` is indexed like taming's: `up[0]` is the full-resolution level, built last and run last.
    """

    def __init__(self, config: VQConfig) -> None:
        super().__init__()
        ch, mult = config.ch, config.ch_mult
        block_in = ch * mult[-1]
        resolution = config.resolution // config.downsampling
        self.conv_in = conv3x3(config.z_channels, block_in)
        self.mid = _Middle(block_in, config.dropout)
        levels: list[_Level] = []
        for i in reversed(range(len(mult))):
            level = _Level()
            block_out = ch * mult[i]
            for _ in range(config.num_res_blocks + 1):
                level.block.append(ResnetBlock(block_in, block_out, config.dropout))
                block_in = block_out
                if resolution in config.attn_resolutions:
                    level.attn.append(AttnBlock(block_in))
            if i != 0:
                level.upsample = Upsample(block_in)
                resolution *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = normalize(block_in)
        self.conv_out = conv3x3(block_in, config.out_channels)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            level = self.up[i]
            h = _run_level(level, h)
            if i != 0:
                h = level.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))
