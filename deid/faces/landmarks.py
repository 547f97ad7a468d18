"""dlib's 68-point landmarks (iBUG 300-W), which the CIAGAN crop and the dlib embedder need."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deid.faces.detectors.base import FaceDetector
from deid.faces.detectors.dlib_detectors import box_to_rect
from deid.faces.types import Face, check_rgb_image

# index ranges of the 68-point scheme (0-based), e.g. for masks or eye centres
JAW = range(0, 17)
RIGHT_BROW = range(17, 22)  # the subject's right = image left
LEFT_BROW = range(22, 27)
NOSE = range(27, 36)
RIGHT_EYE = range(36, 42)
LEFT_EYE = range(42, 48)
MOUTH = range(48, 68)
INNER_EYE_CORNERS = (39, 42)


class LandmarkPredictor:
    """`dlib.shape_predictor` for `shape_predictor_68_face_landmarks.dat`.

    dlib's predictor was trained on boxes from dlib's HOG detector; boxes from other detectors
    (looser MTCNN/BlazeFace ones) still work but the points are a little less precise.
    """

    num_points = 68

    def __init__(self, path: str | Path | None = None) -> None:
        import dlib

        from deid.weights import resolve

        self.path = Path(path) if path is not None else resolve("dlib_landmarks68")
        self._predictor = dlib.shape_predictor(str(self.path))

    def shape(self, image: np.ndarray, box: Sequence[float]) -> object:
        """The raw `dlib.full_object_detection` (what dlib's face descriptor consumes)."""
        return self._predictor(check_rgb_image(image), box_to_rect(box))

    def predict(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """(68, 2) float64 points in original-image pixel coordinates for the face in `box`."""
        shape = self.shape(image, box)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)  # type: ignore[attr-defined]

    def add_landmarks(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        """The same faces with their landmarks replaced by the 68 dlib points."""
        image = check_rgb_image(image)
        return [face.with_landmarks(self.predict(image, face.box)) for face in faces]


def detect_with_landmarks(
    detector: FaceDetector, predictor: LandmarkPredictor, image: np.ndarray
) -> list[Face]:
    """Detect every face and give each its 68 landmarks."""
    return predictor.add_landmarks(image, detector.detect(image))


def inner_eye_centre(landmarks: np.ndarray) -> np.ndarray:
    """Midpoint of the inner eye corners (points 39 and 42): the CIAGAN crop centre."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {points.shape}")
    return (points[INNER_EYE_CORNERS[0]] + points[INNER_EYE_CORNERS[1]]) / 2
