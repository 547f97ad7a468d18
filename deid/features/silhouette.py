"""Person-silhouette features for k-NN re-identification (protocols.md section 5).

Why: the VQGAN de-identification paper (Table I) describes each person by ImageNet ResNet-50
features of the silhouette only, so the background cannot give the match away. Per person:
  1. pixels outside the mask (mask > 0.5) are set to the backbone's neutral colour (0 after
     its normalisation: the ImageNet mean for ResNet-50, 0.5 grey for FID Inception);
  2. crop to the mask's bounding box;
  3. torchvision `resize(224, bilinear, antialias=True)` of the shorter side, then
     `center_crop(224)`, on float [0, 1] tensors (the classic Resize + CenterCrop pair, with
     the crop taken at 224 so the box is cut as little as possible; tall persons still lose
     head and feet, as in the classic pipeline);
  4. ResNet-50: ImageNet mean/std, torchvision resnet50 with `fc = Identity` (2048-d).
     FID Inception (offline fallback): [0, 1] input, the network resizes to 299 and maps to
     [-1, 1] itself; pool3 (2048-d).
ResNet-50 IMAGENET1K_V1 weights are user-supplied; `build_silhouette_features` falls back to
FID Inception with a warning, and `backbone_name` / `weights_sha256` say which one was used.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

from deid.errors import MissingWeightError, unknown_name

CROP_SIZE = 224
FEATURE_DIM = 2048
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def silhouette_crop(
    image: np.ndarray, mask: np.ndarray, fill: Sequence[float], index: int = 0
) -> Tensor:
    """One person as a (3, 224, 224) float tensor in [0, 1], background set to `fill`."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image {index}: expected an HxWx3 RGB array, got {np.shape(image)}")
    if image.dtype != np.uint8:
        raise ValueError(f"image {index}: expected dtype uint8, got {image.dtype}")
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {index}: shape {mask.shape} != image shape {image.shape[:2]}")
    person = mask.astype(bool) if mask.dtype == bool else mask > 0.5
    rows, cols = np.flatnonzero(person.any(axis=1)), np.flatnonzero(person.any(axis=0))
    if rows.size == 0:
        raise ValueError(f"mask {index} is empty: no person pixels to describe")
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    crop = torch.from_numpy(np.ascontiguousarray(image[box])).permute(2, 0, 1).float() / 255
    background = torch.tensor(fill, dtype=crop.dtype)[:, None, None]
    crop = torch.where(torch.from_numpy(person[box])[None], crop, background)
    crop = TF.resize(crop, [CROP_SIZE], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return TF.center_crop(crop, [CROP_SIZE, CROP_SIZE])


class SilhouetteFeatures(nn.Module):
    """A frozen backbone plus the silhouette preprocessing it needs; see the module docstring."""

    def __init__(
        self,
        network: nn.Module,
        backbone_name: str,
        weights_sha256: str,
        *,
        fill: Sequence[float],
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        batch_size: int = 32,
    ) -> None:
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        self.backbone_name = backbone_name
        self.weights_sha256 = weights_sha256
        self.fill = tuple(fill)
        self.batch_size = batch_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def forward(self, crops: Tensor) -> Tensor:
        """(B, 3, 224, 224) silhouette crops in [0, 1] -> (B, 2048) features."""
        return self.network((crops - self.mean) / self.std)

    @torch.inference_mode()
    def extract(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> Tensor:
        """Features (N, 2048) of RGB uint8 images cut out by their person masks (HxW)."""
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        crops = [
            silhouette_crop(im, m, self.fill, i)
            for i, (im, m) in enumerate(zip(images, masks, strict=True))
        ]
        if not crops:
            return torch.empty(0, FEATURE_DIM, device=self.device)
        features = []
        for start in range(0, len(crops), self.batch_size):
            batch = torch.stack(crops[start : start + self.batch_size]).to(self.device)
            features.append(self.forward(batch).float())
        return torch.cat(features)


def _weights_sha256(name: str) -> str:
    from deid.weights import get_spec, resolve, sha256_of

    pinned = get_spec(name).sha256 or ""
    return pinned if len(pinned) == 64 else sha256_of(resolve(name))


def _resnet50(batch_size: int) -> SilhouetteFeatures:
    from torchvision.models import resnet50

    from deid.weights import load_state_dict

    network = resnet50(weights=None)
    network.load_state_dict(load_state_dict("resnet50_imagenet"), strict=True)
    network.fc = nn.Identity()
    return SilhouetteFeatures(
        network,
        "resnet50",
        _weights_sha256("resnet50_imagenet"),
        fill=IMAGENET_MEAN,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        batch_size=batch_size,
    )


def _fid_inception(batch_size: int) -> SilhouetteFeatures:
    from deid.features.fid_inception import load_fid_inception

    return SilhouetteFeatures(
        load_fid_inception("cpu"),
        "fid_inception",
        _weights_sha256("fid_inception"),
        fill=(0.5, 0.5, 0.5),
        batch_size=batch_size,
    )


BACKBONES: dict[str, Callable[[int], SilhouetteFeatures]] = {
    "resnet50": _resnet50,
    "fid_inception": _fid_inception,
}


def build_silhouette_features(
    backbone: str = "resnet50",
    fallback: str | None = "fid_inception",
    device: str | torch.device = "cpu",
    batch_size: int = 32,
) -> SilhouetteFeatures:
    """The silhouette feature extractor, falling back (with a warning) when weights are missing.

    With `fallback=None` a missing weight raises `MissingWeightError`.
    """
    for name in (backbone, fallback):
        if name is not None and name not in BACKBONES:
            raise unknown_name("backbone", name, BACKBONES, ValueError)
    try:
        extractor = BACKBONES[backbone](batch_size)
    except MissingWeightError as err:
        if fallback is None or fallback == backbone:
            raise
        warnings.warn(
            f"silhouette features: {backbone} weights are missing, using {fallback} instead; "
            f"numbers are not comparable with the paper's ResNet-50 ones. ({err})",
            stacklevel=2,
        )
        extractor = BACKBONES[fallback](batch_size)
    return extractor.to(device)
