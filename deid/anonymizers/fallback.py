"""Fail closed: faces the chosen method cannot process get a strong blur or a black box.

A face falls back when its landmarks are missing or unusable for a landmark method
(`landmark_problem`), when a person-mask method's mask misses it, or when the method raises on
it. It is never passed through unchanged.

The fallback blur is deliberately much stronger than the blur baselines (CIAGAN Table 2's
9x9 and 17x17 kernels are sigma 1.7 and 3.2 px whatever the face size): its sigma is 1/6 of the
expanded face box, so the +-3 sigma support spans the whole box and no structure smaller than
about a sixth of the face (eyes, nostrils, mouth corners) survives, at any resolution. Like every wide
blur here it runs on a shrunk copy (`deid.anonymizers.baselines.gaussian`).
"""

from __future__ import annotations

import numpy as np

from deid.anonymizers.base import face_region
from deid.anonymizers.baselines import gaussian
from deid.faces.align import eye_transform
from deid.faces.landmarks import INNER_EYE_CORNERS
from deid.faces.types import Face

FALLBACK_MODES = ("blur", "blackbox")
_MIN_EYE_DISTANCE = 0.02  # inner eye corners closer than this x face size: degenerate
_MAX_EYE_DISTANCE = 1.5  # farther apart than this x face size: landmarks blown apart


def landmark_problem(face: Face) -> str | None:
    """Why `face`'s landmarks cannot drive a 68-point method (None when they can)."""
    points = face.landmarks
    if points is None:
        return "no landmarks"
    if points.shape != (68, 2):
        return f"{points.shape[0]} landmarks instead of 68"
    if not np.isfinite(points).all():
        return "landmarks are not finite"
    size = max(face.width, face.height, 1.0)
    a, b = points[INNER_EYE_CORNERS[0]], points[INNER_EYE_CORNERS[1]]
    eyes = float(np.hypot(*(b - a)))
    if eyes < max(1.0, _MIN_EYE_DISTANCE * size):
        return "degenerate landmarks (inner eye corners coincide)"
    if eyes > _MAX_EYE_DISTANCE * size:
        return "degenerate landmarks (eyes further apart than the face is wide)"
    cx, cy = points.mean(axis=0) + 0.5
    x0, y0, x1, y1 = face.box
    margin_x, margin_y = face.width / 2, face.height / 2
    if not (x0 - margin_x <= cx <= x1 + margin_x and y0 - margin_y <= cy <= y1 + margin_y):
        return "landmarks lie outside the face box"
    try:
        eye_transform(points)
    except ValueError as err:
        return f"no face crop from these landmarks ({err})"
    return None


def strong_blur(region: np.ndarray) -> np.ndarray:
    """Gaussian blur with sigma = 1/6 of the region's longer side (see the module docstring)."""
    return gaussian(region, max(region.shape[:2]) / 6)


def apply_fallback(image: np.ndarray, face: Face, mode: str = "blur", expand: float = 0.25) -> bool:
    """Blur or black out `face`'s box grown by `expand`, in place; False when it is off-image."""
    if mode not in FALLBACK_MODES:
        raise ValueError(f"fallback must be one of {FALLBACK_MODES}, got {mode!r}")
    region = face_region(face, image.shape, expand)
    if region is None:
        return False
    x0, y0, x1, y1 = region
    if mode == "blackbox":
        image[y0:y1, x0:x1] = 0
    else:
        image[y0:y1, x0:x1] = strong_blur(np.ascontiguousarray(image[y0:y1, x0:x1]))
    return True
