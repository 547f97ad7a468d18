"""Images <-> the generator's tensors; its own module so inference loads no training stack
(importing `ciagan.data` pulls in albumentations and the preprocessing, ~1 s)."""

from __future__ import annotations

import numpy as np
import torch


def to_image_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 127.5 - 1.0


def to_map_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8 {0, 255} -> (C, H, W) float in {0, 1}."""
    return (torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1) > 127).float()


def to_uint8_image(tensor: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [-1, 1] -> (H, W, 3) uint8."""
    array = ((tensor.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte()
    return array.permute(1, 2, 0).numpy()
