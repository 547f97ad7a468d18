"""MTCNN's three networks (Zhang et al. 2016), with the state-dict names of facenet-pytorch's
weight files (`pnet.pt`, `rnet.pt`, `onet.pt`), so those files load strictly.

Why our own modules: importing facenet-pytorch's pulls in torchvision (~3 s at start-up), and
torch's CPU `max_pool2d` is slow for these small maps (7.6 ms for a 10x286x382 map, one
thread); the same pooling as a maximum over strided views takes 1.5 ms and gives identical
values. The Caffe-born dense layers read the feature map in (W, H, C) order, hence the permute.
"""

from __future__ import annotations

import torch
from torch import nn


def _pool_axis(x: torch.Tensor, kernel: int, stride: int, dim: int) -> torch.Tensor:
    """Max pooling along one axis (`ceil_mode=True`): the maximum of `kernel` strided views."""
    size = x.shape[dim]
    out = -(-(size - kernel) // stride) + 1
    pad = (out - 1) * stride + kernel - size
    if pad > 0:
        shape = list(x.shape)
        shape[dim] = pad
        x = torch.cat([x, x.new_full(shape, float("-inf"))], dim=dim)
    result = None
    for offset in range(kernel):
        view = x.narrow(dim, offset, (out - 1) * stride + 1)
        view = view[(slice(None),) * (dim % x.ndim) + (slice(None, None, stride),)]
        result = view if result is None else torch.maximum(result, view)
    assert result is not None
    return result


def max_pool_ceil(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """`max_pool2d(x, kernel, stride, ceil_mode=True)`, separably: rows, then columns."""
    return _pool_axis(_pool_axis(x, kernel, stride, x.ndim - 2), kernel, stride, x.ndim - 1)


def _dense_input(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class PNet(nn.Module):
    """Proposal net: fully convolutional, 12x12 windows at stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(box regression [B,4,h,w], face probability [B,h,w])."""
        x = max_pool_ceil(self.prelu1(self.conv1(x)), 2, 2)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)[:, 1]


class RNet(nn.Module):
    """Refinement net on 24x24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = max_pool_ceil(self.prelu1(self.conv1(x)), 3, 2)
        x = max_pool_ceil(self.prelu2(self.conv2(x)), 3, 2)
        x = self.prelu4(self.dense4(_dense_input(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)[:, 1]


class ONet(nn.Module):
    """Output net on 48x48 crops: box, probability and 5 landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(box regression [B,4], landmarks [B,10] (5 x then 5 y), face probability [B])."""
        x = max_pool_ceil(self.prelu1(self.conv1(x)), 3, 2)
        x = max_pool_ceil(self.prelu2(self.conv2(x)), 3, 2)
        x = max_pool_ceil(self.prelu3(self.conv3(x)), 2, 2)
        x = self.prelu5(self.dense5(_dense_input(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)[:, 1]
