"""Pick the one face a protocol evaluates when a detector returns several."""

from __future__ import annotations

from collections.abc import Sequence

from deid.faces.types import Face


def largest_face(faces: Sequence[Face]) -> Face | None:
    """The face with the largest box area (None when there is none)."""
    return max(faces, key=lambda face: face.area, default=None)


def center_weighted_face(
    faces: Sequence[Face], image_shape: Sequence[int], center_weight: float = 2.0
) -> Face | None:
    """The face maximising `area - center_weight * |box centre - image centre|^2`.

    The LFW protocol's choice (protocols.md 1.4; facenet-pytorch's `center_weighted_size`):
    it prefers the photographed person over larger faces near the border.
    `image_shape` is (H, W, ...).
    """
    height, width = int(image_shape[0]), int(image_shape[1])

    def value(face: Face) -> float:
        cx, cy = face.center
        return face.area - center_weight * ((cx - width / 2) ** 2 + (cy - height / 2) ** 2)

    return max(faces, key=value, default=None)
