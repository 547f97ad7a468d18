"""CIAGAN networks: generator, discriminator, identity network and their residual blocks."""

from __future__ import annotations

from torch import nn

from ciagan.nets.blocks import ResBlock, ResBlockDown, ResBlockUp
from ciagan.nets.discriminator import Discriminator
from ciagan.nets.generator import CONDITIONS, Generator, condition_name, inpaint
from ciagan.nets.identity import IdentityNet

__all__ = [
    "CONDITIONS",
    "Discriminator",
    "Generator",
    "IdentityNet",
    "ResBlock",
    "ResBlockDown",
    "ResBlockUp",
    "condition_name",
    "count_parameters",
    "inpaint",
]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as spectral-norm vectors excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
