"""A person as a region to replace: person masks -> square crops, silhouettes, paste-back.

Per person (a connected component of a hard person mask, see `person_components`): the square
crop centred on the mask's box, its side the longer box side grown by `margin` per side
(`deid.faces.align.box_transform`), edge-padded where it leaves the image and resampled
without aliasing (`antialiased_crop`); the mask is cut with the same map. A replacement goes
back through the crop's mask and only inside the person (`paste_person`), so pixels outside
the person stay bit-identical. `silhouette_image` is the person counterpart of the face
landmark image: the pose a generator is conditioned on.

For a generator that synthesizes the whole crop from the silhouette alone (the VQGAN pipeline),
`context_crop` cuts an axis-aligned crop that keeps the person's aspect (sides in multiples of
the model's latent cell) and `paste_synthetic` puts the result back over the person's mask
grown by `dilate` pixels (so no edge pixel of the original person survives), faded over
`feather` pixels *outside* it; pixels farther than `dilate + feather` from the person stay
bit-identical (`person_alpha`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from deid.faces.align import (
    MAX_LINEAR_SHRINK,
    CropTransform,
    RegionCrop,
    antialiased_crop,
    box_transform,
    paste_region,
    rect_transform,
)

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


# ---------------------------------------------------------------- whole-crop synthesis


def grow_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """A bool mask grown by `pixels` (a disc: every pixel within that distance joins)."""
    mask = np.asarray(mask, dtype=bool)
    if pixels <= 0:
        return mask.copy()
    side = 2 * int(pixels) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def context_crop(
    box: tuple[float, float, float, float],
    side: int,
    *,
    multiple: int = 1,
    margin: float = PERSON_MARGIN,
    min_pad: float = 0.0,
    max_aspect: float = 2.0,
) -> CropTransform:
    """An axis-aligned crop around the edge-coordinate `box`, for a model that works at `side`.

    The box grows by `margin` of its longer side per side (at least `min_pad` frame pixels);
    a side shorter than 1/`max_aspect` of the other is widened (more context, so a standing
    person gives at most a max_aspect:1 crop); the crop's shorter side is `side` pixels and
    both sides are multiples of `multiple` (the model's latent cell); the rectangle takes
    exactly the crop's aspect (never stretched) by growing, centred on the box.
    """
    if side < 1 or multiple < 1 or max_aspect < 1:
        raise ValueError(
            f"need side >= 1, multiple >= 1, max_aspect >= 1; got {side}, {multiple}, {max_aspect}"
        )
    x0, y0, x1, y1 = (float(v) for v in box)
    width, height = x1 - x0, y1 - y0
    if width <= 0 or height <= 0:
        raise ValueError(f"empty person box {box!r}")
    pad = max(margin * max(width, height), min_pad)
    width, height = width + 2 * pad, height + 2 * pad
    width, height = max(width, height / max_aspect), max(height, width / max_aspect)
    scale = side / min(width, height)
    out_w = max(multiple, round(width * scale / multiple) * multiple)
    out_h = max(multiple, round(height * scale / multiple) * multiple)
    if width / height < out_w / out_h:
        width = height * out_w / out_h
    else:
        height = width * out_h / out_w
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    rect = (cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)
    return rect_transform(rect, (out_w, out_h))


def crop_mask(mask: np.ndarray, transform: CropTransform) -> np.ndarray:
    """A bool (H, W) mask cut like the image (anti-aliased, then cut at one half)."""
    soft = antialiased_crop(np.where(mask, 255, 0).astype(np.uint8), transform)
    return soft >= 128


def person_alpha(
    person: np.ndarray, dilate: int, feather: float
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Where and how strongly a synthetic person replaces the frame: `(roi, alpha)`.

    alpha (float32, the size of roi = x0, y0, x1, y1 in the frame) is 1 on the person grown
    by `dilate` pixels and falls linearly to 0 at `feather` pixels beyond it; it is 0 outside
    roi. So every pixel of the original person (and `dilate` pixels around it) is replaced
    entirely, and nothing farther than `dilate + feather` pixels changes.
    """
    x0, y0, x1, y1 = mask_box(person)
    reach = max(int(dilate), 0) + math.ceil(max(feather, 0.0)) + 1
    height, width = person.shape[:2]
    roi = (max(x0 - reach, 0), max(y0 - reach, 0), min(x1 + reach, width), min(y1 + reach, height))
    rx0, ry0, rx1, ry1 = roi
    core = grow_mask(person[ry0:ry1, rx0:rx1], dilate)
    if feather <= 0:
        return roi, core.astype(np.float32)
    distance = cv2.distanceTransform((~core).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return roi, np.clip(1.0 - distance / float(feather), 0.0, 1.0).astype(np.float32)


def warp_crop(
    crop: np.ndarray, transform: CropTransform, roi: tuple[int, int, int, int]
) -> np.ndarray:
    """The crop in frame coordinates over `roi` (float32; bicubic, or area-shrunk first when
    the crop is much finer than the frame, so a downscaled synthesis does not alias)."""
    scale = math.sqrt(abs(float(np.linalg.det(transform.matrix[:, :2]))))  # crop px per frame px
    if scale > MAX_LINEAR_SHRINK:
        width, height = transform.size
        size = (max(2, round(width / scale)), max(2, round(height / scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        transform = rect_transform(transform.source_rect(), size)
    rx0, ry0, rx1, ry1 = roi
    matrix = transform.matrix.copy()
    matrix[:, 2] += matrix[:, :2] @ np.array([rx0, ry0], dtype=np.float64)
    return cv2.warpAffine(
        crop.astype(np.float32),
        matrix,
        (rx1 - rx0, ry1 - ry0),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def blend_person(
    image: np.ndarray,
    roi: tuple[int, int, int, int],
    alpha: np.ndarray,
    replacement: np.ndarray | tuple[int, int, int],
) -> np.ndarray:
    """A copy of `image` with `replacement` (roi-sized pixels, or one colour) blended in by
    `alpha` (`person_alpha`); pixels where alpha is 0 are bit-identical."""
    out = image.copy()
    rx0, ry0, rx1, ry1 = roi
    region = out[ry0:ry1, rx0:rx1]
    weight = alpha[..., None]
    mixed = weight * np.asarray(replacement, dtype=np.float32) + (1 - weight) * region
    touched = alpha > 0
    region[touched] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)[touched]
    return out


def paste_synthetic(
    image: np.ndarray,
    person: np.ndarray,
    crop: np.ndarray,
    transform: CropTransform,
    dilate: int = 3,
    feather: float = 4.0,
) -> np.ndarray:
    """A synthetic crop (from `context_crop`'s `transform`) over the person's grown mask, faded
    outward (`person_alpha`); everything else bit-identical."""
    roi, alpha = person_alpha(person, dilate, feather)
    return blend_person(image, roi, alpha, warp_crop(crop, transform, roi))
