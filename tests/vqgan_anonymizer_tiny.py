"""Tiny random-weight VQGAN bundles (image stage, condition stage, transformer) for the pipeline
tests: 32 px training resolution, 4 px latent cells, an 8x8 transformer window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from vqgan.checkpoint import make_bundle, save_bundle
from vqgan.nets import GPT, GPTConfig, VQAutoencoder, VQConfig

TINY_VQ = {
    "resolution": 32,
    "ch": 32,
    "ch_mult": (1, 1, 2),
    "num_res_blocks": 1,
    "attn_resolutions": (),
    "z_channels": 32,
    "embed_dim": 32,
    "n_embed": 64,
}


def tiny_bundle(labels: int = 2, seed: int = 0, **meta: Any) -> dict[str, Any]:
    """A deid-vqgan bundle whose condition stage takes `labels` one-hot channels."""
    torch.manual_seed(seed)
    first = VQAutoencoder(VQConfig(**TINY_VQ))
    cond = VQAutoencoder(VQConfig(in_channels=labels, out_channels=labels, **TINY_VQ))
    gpt = GPT(GPTConfig(vocab_size=64, block_size=128, n_layer=1, n_head=2, n_embd=32))
    with torch.no_grad():  # peaked logits, like a trained transformer's
        gpt.head.weight.mul_(8)
    return make_bundle(first_stage=first, cond_stage=cond, transformer=gpt, meta=meta)


def save_tiny(path: Path, labels: int = 2, **meta: Any) -> Path:
    return save_bundle(tiny_bundle(labels, **meta), path)


def side_by_side(photos: list[np.ndarray], size: tuple[int, int], gap: int) -> np.ndarray:
    """Photos resized to `size` (width, height) in a row, a grey gap between them."""
    tiles = [cv2.resize(p, size, interpolation=cv2.INTER_AREA) for p in photos]
    parts: list[np.ndarray] = []
    for tile in tiles:
        if parts:
            parts.append(np.full((size[1], gap, 3), 90, np.uint8))
        parts.append(tile)
    return np.concatenate(parts, axis=1)
