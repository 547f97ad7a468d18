"""CIAGAN's pixel inputs: the landmark image, the face mask, and the face crop itself.

All points are (68, 2) dlib landmarks in pixel-index coordinates of the image being drawn
(the centre of pixel `image[i, j]` is `(x, y) = (j, i)`, see `deid.faces.types`); sizes are
`(width, height)` as OpenCV takes them. Everything here is plain numpy/OpenCV, cheap enough
to run in a data loader for every sample (see `ciagan.preprocess` for why that is the default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from deid.faces.align import CropTransform, crop

JAW = tuple(range(0, 17))  # open polyline, ear to ear under the chin
NOSE_BRIDGE = tuple(range(27, 31))  # open polyline
INNER_LIPS = tuple(range(60, 68))  # closed polygon
LANDMARK_LINES: tuple[tuple[tuple[int, ...], bool], ...] = (
    (JAW, False),
    (NOSE_BRIDGE, False),
    (INNER_LIPS, True),
)
BROW_OUTER = (19, 24)  # the mask's top edge: (x16, y24) and (x0, y19), up to the eyebrows
# shrinking a face by more than this factor is pre-filtered (area average) to avoid aliasing
MAX_LINEAR_SHRINK = 1.5


def _points(points: np.ndarray) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("landmarks contain NaN or infinite values")
    return array


def _canvas_size(size: Sequence[int]) -> tuple[int, int]:
    width, height = (int(v) for v in size)
    if width <= 0 or height <= 0:
        raise ValueError(f"image size (width, height) must be positive, got {tuple(size)}")
    return width, height


def _pixels(points: np.ndarray) -> np.ndarray:
    """Nearest pixel centres as int32, clamped so far-away points cannot overflow OpenCV."""
    return np.clip(np.rint(points), -(2**20), 2**20).astype(np.int32)


def landmark_image(points: np.ndarray, size: Sequence[int], thickness: int = 1) -> np.ndarray:
    """The (H, W, 3) uint8 landmark image: white lines on black (jaw, nose bridge, inner lips).

    Lines are OpenCV 8-connected (`LINE_8`, no anti-aliasing) between the points rounded to
    the nearest pixel, so with `thickness=1` a line is exactly one pixel wide (larger values
    are OpenCV's thickness: 3 draws about 5 px); parts outside the image are clipped.
    """
    array = _pixels(_points(points))
    width, height = _canvas_size(size)
    image = np.zeros((height, width, 3), np.uint8)
    for indices, closed in LANDMARK_LINES:
        cv2.polylines(
            image,
            [array[list(indices)].reshape(-1, 1, 2)],
            closed,
            (255, 255, 255),
            int(thickness),
            cv2.LINE_8,
        )
    return image


def mask_polygon(points: np.ndarray) -> np.ndarray:
    """(19, 2) float: jaw 0..16, then (x16, y24) and (x0, y19), i.e. up to the eyebrows."""
    array = _points(points)
    top_left = (array[0, 0], array[BROW_OUTER[0], 1])
    top_right = (array[16, 0], array[BROW_OUTER[1], 1])
    return np.vstack([array[list(JAW)], [top_right, top_left]])


def face_mask(points: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """The (H, W) uint8 face mask, 255 inside `mask_polygon(points)` (edges included), else 0."""
    width, height = _canvas_size(size)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [_pixels(mask_polygon(points)).reshape(-1, 1, 2)], 255, cv2.LINE_8)
    return mask


def resize_points(
    points: np.ndarray, from_size: Sequence[int], to_size: Sequence[int]
) -> np.ndarray:
    """Map pixel-index points of an image of `from_size` onto the same image resized to `to_size`.

    Pixel centres scale about the image edges, as `cv2.resize` samples: `(p + 0.5) * s - 0.5`
    per axis with `s = to / from`. Works for any (N, 2) array.
    """
    (fw, fh), (tw, th) = _canvas_size(from_size), _canvas_size(to_size)
    scale = np.array([tw / fw, th / fh])
    return (np.asarray(points, dtype=np.float64).reshape(-1, 2) + 0.5) * scale - 0.5


def face_crop(image: np.ndarray, transform: CropTransform) -> np.ndarray:
    """Cut the crop `transform` describes (edge-replicated outside the image), without aliasing.

    A plain bilinear warp samples only 4 source pixels per output pixel, so a face shrunk more
    than `MAX_LINEAR_SHRINK` times would alias (jagged hair and edges). Then the covered part of
    the image is first shrunk with area averaging (`cv2.INTER_AREA`) to about the crop's scale
    and the remaining near-1:1 map is warped bilinearly. The geometry is exactly `transform`'s.
    """
    matrix = transform.matrix
    scale = math.sqrt(abs(float(np.linalg.det(matrix[:, :2]))))
    if scale * MAX_LINEAR_SHRINK >= 1.0:
        return crop(image, transform, interpolation="linear")
    height, width = image.shape[:2]
    left, top, right, bottom = transform.source_rect()
    pad = 2.0 / scale  # a margin of two crop pixels, so the warp never samples past the region
    x0, y0 = max(0, math.floor(left - pad)), max(0, math.floor(top - pad))
    x1, y1 = min(width, math.ceil(right + pad)), min(height, math.ceil(bottom + pad))
    if x1 - x0 < 2 or y1 - y0 < 2:  # the crop lies (almost) outside the image
        return crop(image, transform, interpolation="linear")
    region = image[y0:y1, x0:x1]
    small_w = max(2, round((x1 - x0) * scale))
    small_h = max(2, round((y1 - y0) * scale))
    small = cv2.resize(region, (small_w, small_h), interpolation=cv2.INTER_AREA)
    # small pixel p' = (p - origin + 0.5) * r - 0.5, so p = (p' + 0.5) / r - 0.5 + origin
    rx, ry = small_w / (x1 - x0), small_h / (y1 - y0)
    linear = matrix[:, :2] @ np.diag([1.0 / rx, 1.0 / ry])
    offset = matrix[:, :2] @ np.array([0.5 / rx - 0.5 + x0, 0.5 / ry - 0.5 + y0]) + matrix[:, 2]
    composed = CropTransform(np.hstack([linear, offset[:, None]]), transform.size)
    return crop(small, composed, interpolation="linear")
