"""The classic baselines of the papers' tables: blur, pixelation, black box, mask-out, original.

Each works on the face box (or the person mask for mask-out) and leaves every other pixel
bit-identical. They are deterministic, so seeds are accepted and ignored.

Detector boxes are tight (dlib's HOG box runs from the brows to the lips), so by default the
region is the box grown by 25% (`expand`), which covers forehead and chin; measured on the demo
photos, dlib HOG still found 8/14 pixel16-ed faces with the bare box and 2/14 with 25% more.
Kernel sizes and cell counts are in pixels / cells as in CIAGAN Table 2 (128 px faces): on
larger faces the same blur is weaker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from deid.anonymizers.base import (
    NEEDS_FACES,
    NEEDS_PERSON_MASK,
    Subject,
    check_subjects,
    face_region,
)

RegionFilter = Callable[[np.ndarray], np.ndarray]


def gaussian_blur(kernel: int) -> RegionFilter:
    """OpenCV Gaussian blur with a square kernel; sigma derived from the kernel as OpenCV does."""

    def apply(region: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(region, (kernel, kernel), 0, borderType=cv2.BORDER_REPLICATE)

    return apply


def pixelate(cells: int) -> RegionFilter:
    """Average the region down to `cells` x `cells` blocks, then scale back with hard edges."""

    def apply(region: np.ndarray) -> np.ndarray:
        height, width = region.shape[:2]
        small = cv2.resize(region, (cells, cells), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)

    return apply


def black_box(region: np.ndarray) -> np.ndarray:
    return np.zeros_like(region)


class InPlaceEdit:
    """Shared `anonymize`: check the inputs, then `edit` a copy of each image in place."""

    def edit(self, image: np.ndarray, subject: Subject) -> None:
        raise NotImplementedError

    def anonymize(
        self, subjects: Sequence[Subject], seeds: Sequence[int] | None = None
    ) -> list[np.ndarray]:
        check_subjects(self, subjects)  # type: ignore[arg-type]
        outputs = []
        for subject in subjects:
            out = subject.image.copy()
            self.edit(out, subject)
            outputs.append(out)
        return outputs


@dataclass
class FaceRegionAnonymizer(InPlaceEdit):
    """Replace each face box with `filter(box pixels)`; everything else is untouched."""

    name: str
    region_filter: RegionFilter
    expand: float = 0.25
    needs: frozenset[str] = frozenset({NEEDS_FACES})

    def edit(self, image: np.ndarray, subject: Subject) -> None:
        for face in subject.faces:
            region = face_region(face, image.shape, self.expand)
            if region is None:
                continue
            x0, y0, x1, y1 = region
            image[y0:y1, x0:x1] = self.region_filter(np.ascontiguousarray(image[y0:y1, x0:x1]))


@dataclass
class MaskOutAnonymizer(InPlaceEdit):
    """Fill the person silhouette with a constant colour (the mask-out baseline)."""

    name: str = "maskout"
    fill: tuple[int, int, int] = (0, 0, 0)
    threshold: float = 0.5
    needs: frozenset[str] = frozenset({NEEDS_PERSON_MASK})

    def edit(self, image: np.ndarray, subject: Subject) -> None:
        assert subject.person_mask is not None  # check_subjects guarantees it
        mask = np.asarray(subject.person_mask)
        inside = mask if mask.dtype == bool else mask >= self.threshold
        if inside.shape != image.shape[:2]:
            raise ValueError(f"person mask {inside.shape} != image {image.shape[:2]}")
        image[inside] = np.asarray(self.fill, dtype=np.uint8)


@dataclass
class IdentityAnonymizer(InPlaceEdit):
    """No change: the "original" row of every table (the clean reference)."""

    name: str = "original"
    needs: frozenset[str] = frozenset()

    def edit(self, image: np.ndarray, subject: Subject) -> None:
        return None


def blur(kernel: int, expand: float = 0.25) -> FaceRegionAnonymizer:
    if kernel <= 0 or kernel % 2 == 0:
        raise ValueError(f"blur kernel must be a positive odd number, got {kernel}")
    return FaceRegionAnonymizer(f"blur{kernel}", gaussian_blur(kernel), expand)


def pixelation(cells: int, expand: float = 0.25) -> FaceRegionAnonymizer:
    if cells <= 0:
        raise ValueError(f"pixelation needs a positive cell count, got {cells}")
    return FaceRegionAnonymizer(f"pixel{cells}", pixelate(cells), expand)


def blackbox(expand: float = 0.25) -> FaceRegionAnonymizer:
    return FaceRegionAnonymizer("blackbox", black_box, expand)
