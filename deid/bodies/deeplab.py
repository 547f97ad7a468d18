"""torchvision DeepLabV3 ResNet-50 (COCO images, Pascal VOC labels) person segmentation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import deid.weights as weights
from deid.bodies.base import (
    DEFAULT_MIN_INSTANCE_FRACTION,
    PersonMasks,
    check_rgb,
    instances_from_union,
)

PERSON_CLASS = 15  # Pascal VOC: 0 background, ..., 15 person
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DeepLabV3Segmenter:
    """Person probability from DeepLabV3-ResNet50 (softmax over 21 VOC classes, class 15).

    Weights: `state_dict` if given (tests pass a random-init one), else
    `deid.weights.load_state_dict("deeplabv3")`, the user-supplied torchvision file
    deeplabv3_resnet50_coco-cd0a2569.pth (a clear MissingWeightError says where to put it).
    The image is resized so its shorter side is `resize_short` (520, as torchvision's
    preset; None keeps the input size), ImageNet-normalised, and the class probabilities are
    resized back to the input resolution. Semantic segmentation only: `instances` are the
    connected components of `probability >= threshold` (`instances_from_components`).
    """

    name = "deeplabv3"

    def __init__(
        self,
        state_dict: Mapping[str, Any] | None = None,
        device: str | None = None,
        threshold: float = 0.5,
        resize_short: int | None = 520,
        min_instance_fraction: float = DEFAULT_MIN_INSTANCE_FRACTION,
    ) -> None:
        import torch
        from torchvision.models.segmentation import deeplabv3_resnet50

        if state_dict is None:
            state_dict = weights.load_state_dict("deeplabv3")
        # Built on the meta device: no time spent on a random init the weights overwrite;
        # the strict load (assign=True) replaces every parameter and buffer or raises.
        with torch.device("meta"):
            model = deeplabv3_resnet50(
                weights=None, weights_backbone=None, num_classes=21, aux_loss=True
            )
        model.load_state_dict(state_dict, assign=True)
        model.aux_classifier = None  # only used for training; saves its compute
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)
        self.threshold = float(threshold)
        self.resize_short = resize_short
        self.min_instance_fraction = min_instance_fraction
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def person_probability(self, image: np.ndarray) -> np.ndarray:
        """(H, W) float32 probability of the person class at the input resolution."""
        import torch
        import torch.nn.functional as F

        image = check_rgb(image)
        height, width = image.shape[:2]
        with torch.inference_mode():
            x = torch.from_numpy(image).to(self.device).permute(2, 0, 1)[None].float() / 255.0
            if self.resize_short is not None:
                scale = self.resize_short / min(height, width)
                size = (max(1, round(height * scale)), max(1, round(width * scale)))
                x = F.interpolate(
                    x, size=size, mode="bilinear", align_corners=False, antialias=True
                )
            logits = self.model((x - self._mean) / self._std)["out"]
            logits = F.interpolate(
                logits, size=(height, width), mode="bilinear", align_corners=False
            )
            prob = logits.softmax(dim=1)[0, PERSON_CLASS]
        return prob.float().cpu().numpy()

    def segment(self, image: np.ndarray) -> PersonMasks:
        masks = PersonMasks(union=self.person_probability(image), threshold=self.threshold)
        masks.instances = instances_from_union(masks.binary, self.min_instance_fraction)
        return masks

    def close(self) -> None:
        """Nothing to release beyond the model (kept for the common segmenter interface)."""

    def __enter__(self) -> DeepLabV3Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
