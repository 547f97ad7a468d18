"""The one record every face detector, landmark model and embedder exchanges.

Coordinate conventions (shared by the whole `deid.faces` package):
- `box` is a half-open pixel range in the original image: the face covers
  `image[y0:y1, x0:x1]` (fractional values allowed; a box may extend past the image border,
  detectors do not clip). dlib's inclusive `right/bottom` therefore become `right + 1`.
- `landmarks` are points in pixel-index coordinates as OpenCV and dlib use them: the centre of
  pixel `image[i, j]` is `(x, y) = (j, i)`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face: box (x0, y0, x1, y1), detector score, optional (N, 2) landmarks."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None

    def __post_init__(self) -> None:
        box = tuple(float(v) for v in self.box)
        if len(box) != 4:
            raise ValueError(f"a face box needs 4 numbers (x0, y0, x1, y1), got {self.box!r}")
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "score", float(self.score))
        if self.landmarks is not None:
            points = np.asarray(self.landmarks, dtype=np.float64).reshape(-1, 2)
            object.__setattr__(self, "landmarks", points)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def with_landmarks(self, landmarks: np.ndarray | None) -> Face:
        """A copy with other landmarks (e.g. dlib's 68 points replacing a detector's 5)."""
        return dataclasses.replace(self, landmarks=landmarks)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only: `{"box": [...], "score": s, "landmarks": [[x, y], ...] | None}`."""
        return {
            "box": [float(v) for v in self.box],
            "score": float(self.score),
            "landmarks": None if self.landmarks is None else self.landmarks.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Face:
        landmarks = data.get("landmarks")
        return cls(
            box=tuple(data["box"]),
            score=data["score"],
            landmarks=None if landmarks is None else np.asarray(landmarks, dtype=np.float64),
        )


def check_rgb_image(image: np.ndarray) -> np.ndarray:
    """Detectors take RGB uint8 (H, W, 3); return it C-contiguous or raise a clear ValueError."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"expected an RGB uint8 array (H, W, 3), got {kind}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 array (H, W, 3), got shape {image.shape}")
    return np.ascontiguousarray(image)
