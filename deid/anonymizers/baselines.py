"""The classic baselines of the papers' tables: blur, pixelation, black box, mask-out, original.

Each works on the face box (or the person mask for mask-out) and leaves every other pixel
bit-identical. They are deterministic, so seeds are accepted and ignored.

Detector boxes are tight (dlib's HOG box runs from the brows to the lips), so by default the
region is the box grown by 25% (`expand`), which covers forehead and chin; measured on the demo
photos, dlib HOG still found 8/14 pixel16-ed faces with the bare box and 2/14 with 25% more.

Strength is relative to the face, so a photo's resolution does not change what survives:
- `blur` (the anonymize default): Gaussian sigma = 1/8 of the region's longer side. Audited
  on the 118 demo photos, the demo group photo, it upscaled 6x and the demo's moving-faces
  clip (261 faces), no output face stays within FaceNet squared L2 1.2 of its source (closest
  1.25), while the paper's fixed 9x9 / 17x17 blurs leave most faces matching
  (experiments/anonymize_strength/).
- `blur9`, `blur17`: CIAGAN Table 2's kernels defined at a 128 px face (`reference_face`) and
  scaled with each face; `blur9_px`, `blur17_px` keep them fixed in pixels, as the paper ran
  them on 128 px aligned crops (use these to reproduce its tables).
- `pixel8`, `pixel16`: the region averaged to 8x8 / 16x16 cells, whatever its size.
"""

from __future__ import annotations

import math
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

RegionFilter = Callable[[np.ndarray, float], np.ndarray]  # (region pixels, face size) -> pixels


# OpenCV's sigma for a kernel of size k (getGaussianKernel with sigma <= 0)
def kernel_sigma(kernel: int) -> float:
    return 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8


_SHRUNK_SIGMA = 3.0  # a wide blur runs on a copy shrunk until its sigma is this many pixels


def gaussian(region: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of `sigma` px. A wide one runs on a copy shrunk by sigma / 3 (area
    averaging) and is scaled back bilinearly: what survives such a blur varies over many
    pixels, so the result is visually the same at a fraction of the cost (a 160 px face at
    sigma 20: 0.6 ms instead of 15 ms)."""
    if sigma <= _SHRUNK_SIGMA:
        kernel = 2 * math.ceil(3 * sigma) + 1
        return cv2.GaussianBlur(region, (kernel, kernel), sigma, borderType=cv2.BORDER_REPLICATE)
    height, width = region.shape[:2]
    scale = _SHRUNK_SIGMA / sigma
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
    kernel = 2 * math.ceil(3 * _SHRUNK_SIGMA) + 1
    small = cv2.GaussianBlur(
        small, (kernel, kernel), _SHRUNK_SIGMA, borderType=cv2.BORDER_REPLICATE
    )
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def gaussian_blur(kernel: int, reference_face: float | None = None) -> RegionFilter:
    """OpenCV Gaussian blur of a `kernel` x `kernel` kernel (sigma as OpenCV derives it), fixed
    in pixels, or, with `reference_face`, that blur at a face that many pixels wide and scaled
    to each face's size."""

    def apply(region: np.ndarray, face_size: float) -> np.ndarray:
        if reference_face is None:
            return cv2.GaussianBlur(region, (kernel, kernel), 0, borderType=cv2.BORDER_REPLICATE)
        return gaussian(region, kernel_sigma(kernel) * max(face_size, 1.0) / reference_face)

    return apply


def relative_blur(fraction: float) -> RegionFilter:
    """Gaussian blur with sigma = `fraction` of the region's longer side."""

    def apply(region: np.ndarray, face_size: float) -> np.ndarray:
        return gaussian(region, fraction * max(region.shape[:2]))

    return apply


def pixelate(cells: int) -> RegionFilter:
    """Average the region down to `cells` x `cells` blocks, then scale back with hard edges."""

    def apply(region: np.ndarray, face_size: float) -> np.ndarray:
        height, width = region.shape[:2]
        small = cv2.resize(region, (cells, cells), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)

    return apply


def black_box(region: np.ndarray, face_size: float) -> np.ndarray:
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
            pixels = np.ascontiguousarray(image[y0:y1, x0:x1])
            image[y0:y1, x0:x1] = self.region_filter(pixels, max(face.width, face.height))


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


DEFAULT_BLUR_FRACTION = 0.125
PAPER_FACE_SIZE = 128.0  # CIAGAN Table 2's kernels were applied to 128 px faces


def blur(
    kernel: int, expand: float = 0.25, reference_face: float | None = PAPER_FACE_SIZE
) -> FaceRegionAnonymizer:
    """`blur9`-style blur scaled to each face (`reference_face` px = the paper's kernel), or
    fixed in pixels (`reference_face=None`, named `blur9_px`)."""
    if kernel <= 0 or kernel % 2 == 0:
        raise ValueError(f"blur kernel must be a positive odd number, got {kernel}")
    if reference_face is not None and reference_face <= 0:
        raise ValueError(f"reference_face must be a positive size in pixels, got {reference_face}")
    name = f"blur{kernel}" if reference_face is not None else f"blur{kernel}_px"
    return FaceRegionAnonymizer(name, gaussian_blur(kernel, reference_face), expand)


def face_blur(
    fraction: float = DEFAULT_BLUR_FRACTION, expand: float = 0.25
) -> FaceRegionAnonymizer:
    """The anonymize default: sigma = `fraction` of each face region's longer side."""
    if not 0 < fraction <= 1:
        raise ValueError(f"blur fraction must be in (0, 1], got {fraction}")
    return FaceRegionAnonymizer("blur", relative_blur(fraction), expand)


def pixelation(cells: int, expand: float = 0.25) -> FaceRegionAnonymizer:
    if cells <= 0:
        raise ValueError(f"pixelation needs a positive cell count, got {cells}")
    return FaceRegionAnonymizer(f"pixel{cells}", pixelate(cells), expand)


def blackbox(expand: float = 0.25) -> FaceRegionAnonymizer:
    return FaceRegionAnonymizer("blackbox", black_box, expand)
