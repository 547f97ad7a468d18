"""The person-segmentation contract shared by every segmenter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

DEFAULT_MIN_INSTANCE_FRACTION = 0.001  # 0.1 % of the image: 262 px at 512x512


@dataclass
class PersonMasks:
    """Where the people are in one image, at the input image's resolution.

    union: (H, W) float32 in [0, 1], the per-pixel person probability / soft mask (blend with
        it, or use `binary` for a hard mask).
    instances: one (H, W) bool mask per person, largest first; may be empty.
    threshold: the cut `binary` uses (the segmenter's threshold).
    instances_from_components: True when the model gives only a union and the instances are
        its connected components (see `instances_from_union`), so touching people merge into one
        instance and a person split by an occluder becomes two.
    """

    union: np.ndarray
    instances: list[np.ndarray] = field(default_factory=list)
    threshold: float = 0.5
    instances_from_components: bool = True

    def __post_init__(self) -> None:
        if self.union.ndim != 2:
            raise ValueError(f"union must be (H, W), got shape {self.union.shape}")
        self.union = np.clip(self.union.astype(np.float32, copy=False), 0.0, 1.0)
        for mask in self.instances:
            if mask.shape != self.union.shape or mask.dtype != bool:
                raise ValueError(
                    f"instances must be bool {self.union.shape}, got {mask.dtype} {mask.shape}"
                )

    @property
    def binary(self) -> np.ndarray:
        """(H, W) bool: union >= threshold."""
        return self.union >= self.threshold

    @property
    def shape(self) -> tuple[int, int]:
        return self.union.shape  # type: ignore[return-value]


@runtime_checkable
class PersonSegmenter(Protocol):
    """Anything with `segment(rgb_uint8_image) -> PersonMasks`."""

    def segment(self, image: np.ndarray) -> PersonMasks: ...


def check_rgb(image: np.ndarray) -> np.ndarray:
    """Validate an RGB uint8 (H, W, 3) image and return it C-contiguous."""
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
    ):
        got = (
            f"{image.dtype} {image.shape}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise ValueError(f"expected an RGB uint8 image of shape (H, W, 3), got {got}")
    return np.ascontiguousarray(image)


def instances_from_union(
    binary: np.ndarray, min_fraction: float = DEFAULT_MIN_INSTANCE_FRACTION
) -> list[np.ndarray]:
    """Connected components (8-connectivity) of a hard person mask, largest first.

    Components smaller than `min_fraction` of the image area are dropped as noise.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        binary.astype(np.uint8), connectivity=8
    )
    min_area = max(1, round(min_fraction * binary.size))
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = [label + 1 for label in np.argsort(-areas, kind="stable") if areas[label] >= min_area]
    return [labels == label for label in keep]
