"""VQGAN networks with taming-transformers' module trees (official weights load by key)."""

from __future__ import annotations

from torch import nn

from vqgan.nets.autoencoder import Decoder, Encoder
from vqgan.nets.blocks import AttnBlock, Downsample, ResnetBlock, Upsample
from vqgan.nets.config import DiscriminatorConfig, GPTConfig, VQConfig
from vqgan.nets.discriminator import NLayerDiscriminator
from vqgan.nets.gpt import GPT, KVCache
from vqgan.nets.quantize import Quantized, VectorQuantizer
from vqgan.nets.vqmodel import VQAutoencoder

__all__ = [
    "GPT",
    "AttnBlock",
    "Decoder",
    "DiscriminatorConfig",
    "Downsample",
    "Encoder",
    "GPTConfig",
    "KVCache",
    "NLayerDiscriminator",
    "Quantized",
    "ResnetBlock",
    "Upsample",
    "VQAutoencoder",
    "VQConfig",
    "VectorQuantizer",
    "count_parameters",
]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
