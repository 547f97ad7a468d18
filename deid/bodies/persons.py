"""A person as a region to replace: person masks -> square crops, silhouettes, paste-back.

Per person (a connected component of a hard person mask, see `person_components`): the square
crop centred on the mask's box, its side the longer box side grown by `margin` per side
(`deid.faces.align.box_transform`), edge-padded where it leaves the image and resampled
without aliasing (`antialiased_crop`); the mask is cut with the same map. A replacement goes
back through the crop's mask and only inside the person (`paste_person`), so pixels outside
the person stay bit-identical. `silhouette_image` is the person counterpart of the face
landmark image: the pose a generator is conditioned on.
"""

from __future__ import annotations

import cv2
import numpy as np

from deid.faces.align import RegionCrop, antialiased_crop, box_transform, paste_region

PERSON_CROP_SIZE = 256  # square crop side in pixels
PERSON_MARGIN = 0.1  # added on each side, as a fraction of the mask box's longer side


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Edge-coordinate box (x0, y0, x1, y1) of a non-empty (H, W) mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("empty person mask")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def person_components(mask: np.ndarray, min_area: int = 1) -> list[np.ndarray]:
    """Connected components (8-connectivity) of a hard person mask with at least `min_area`
    pixels, as bool masks ordered left to right (box x0, then y0)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        np.asarray(mask).astype(np.uint8), connectivity=8
    )
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= max(1, min_area)]
    keep.sort(key=lambda i: (stats[i, cv2.CC_STAT_LEFT], stats[i, cv2.CC_STAT_TOP], i))
    return [labels == i for i in keep]


def person_region(
    image: np.ndarray,
    person: np.ndarray,
    size: int = PERSON_CROP_SIZE,
    margin: float = PERSON_MARGIN,
) -> RegionCrop:
    """The square crop around one person's (H, W) bool mask, and the mask cut the same way
    (uint8 0/255)."""
    transform = box_transform(mask_box(person), size, margin=margin, square=True)
    crop = antialiased_crop(image, transform)
    soft = antialiased_crop(np.where(person, 255, 0).astype(np.uint8), transform)
    return RegionCrop(transform, crop, np.where(soft >= 128, 255, 0).astype(np.uint8))


def paste_person(
    image: np.ndarray,
    region: RegionCrop,
    replacement: np.ndarray,
    person: np.ndarray,
    feather: float = 4.0,
) -> np.ndarray:
    """`replacement` pasted through the crop's mask (`paste_region`), kept only inside the
    frame-sized bool `person` mask."""
    pasted = paste_region(image, region, replacement, feather)
    return np.where(person[..., None], pasted, image)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A 0/255 mask resized to `size` x `size` (area-averaged, then cut at one half)."""
    small = cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA)
    return np.where(small >= 128, 255, 0).astype(np.uint8)


def silhouette_image(mask: np.ndarray) -> np.ndarray:
    """The person's pose image: the filled silhouette, white on black, 3 channels (the same
    channel layout as the face landmark image)."""
    return np.repeat(np.where(np.asarray(mask) > 127, 255, 0).astype(np.uint8)[..., None], 3, 2)
