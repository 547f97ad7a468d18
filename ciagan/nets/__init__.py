"""CIAGAN networks: generator, discriminator, identity network and their residual blocks."""

from __future__ import annotations

from torch import nn

from ciagan.nets.blocks import ResBlock, ResBlockDown, ResBlockUp
from ciagan.nets.discriminator import Discriminator
from ciagan.nets.generator import Generator
from ciagan.nets.identity import IdentityNet

__all__ = [
    "Discriminator",
    "Generator",
    "IdentityNet",
    "ResBlock",
    "ResBlockDown",
    "ResBlockUp",
    "count_parameters",
]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as spectral-norm vectors excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
