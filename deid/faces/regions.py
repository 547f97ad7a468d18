"""A face as a region to replace: the eye-centred crop with its face mask.

The crop is CIAGAN's and CelebA's aligned format (`eye_transform`: 178x218, centred on the
inner eye corners), cut without aliasing (`antialiased_crop`); the mask is the jaw-to-brows
polygon of the 68 landmarks (`deid.faces.render.face_mask`). A replacement goes back with
`deid.faces.align.paste_region`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deid.faces.align import RegionCrop, antialiased_crop, eye_transform
from deid.faces.render import face_mask

FACE_CROP_SIZE = (178, 218)  # width, height
FACE_CROP_SCALE = 5.0  # crop half-height = scale x the inner-eye-corner distance


def face_region(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: Sequence[int] = FACE_CROP_SIZE,
    scale: float = FACE_CROP_SCALE,
) -> RegionCrop:
    """The eye-centred crop of the face with these (68, 2) landmarks, and its face mask.

    Raises ValueError for landmarks that cannot size the crop (coinciding eye corners)."""
    transform = eye_transform(landmarks, size, scale)
    mask = face_mask(transform.apply(landmarks), transform.size)
    return RegionCrop(transform, antialiased_crop(image, transform), mask)
