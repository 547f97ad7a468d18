"""Face maps drawn from 68 landmarks: the landmark line image and the face mask (CIAGAN's pose
condition and paint region), and landmark points moved between image sizes.

All points are (68, 2) dlib landmarks in pixel-index coordinates of the image being drawn
(the centre of pixel `image[i, j]` is `(x, y) = (j, i)`, see `deid.faces.types`); sizes are
`(width, height)` as OpenCV takes them. Everything here is plain numpy/OpenCV, cheap enough
to run in a data loader for every sample (see `deid.prep.faces` for why that is the default).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

JAW = tuple(range(0, 17))  # open polyline, ear to ear under the chin
NOSE_BRIDGE = tuple(range(27, 31))  # open polyline
INNER_LIPS = tuple(range(60, 68))  # closed polygon
LANDMARK_LINES: tuple[tuple[tuple[int, ...], bool], ...] = (
    (JAW, False),
    (NOSE_BRIDGE, False),
    (INNER_LIPS, True),
)
BROW_OUTER = (19, 24)  # the mask's top edge: (x16, y24) and (x0, y19), up to the eyebrows


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
