"""What the runner needs to know about a frame: faces (+ 68 landmarks) and person masks.

A landmark prediction that raises leaves that face without landmarks (it then falls back, see
`deid.anonymizers.fallback`); the detector raising fails the file, since faces it would have
found cannot be anonymized.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deid.bodies import PersonSegmenter
from deid.faces import FaceDetector, LandmarkPredictor
from deid.faces.types import Face


@dataclass
class Perception:
    """Face detector, optional 68-point landmark predictor, optional person segmenter."""

    detector: FaceDetector
    landmarks: LandmarkPredictor | None = None
    segmenter: PersonSegmenter | None = None

    def faces(self, image: np.ndarray, frame: int = 0) -> list[Face]:
        """Faces of an image, or of frame `frame` of a video (detectors may skip frames)."""
        faces = list(self.detector.detect_frame(image, frame))
        if self.landmarks is None:
            return faces
        out = []
        for face in faces:
            try:
                points = self.landmarks.predict(image, face.box)
            except Exception:  # a box dlib cannot take: no landmarks -> fallback
                points = None
            out.append(face.with_landmarks(points))
        return out

    def person_mask(self, image: np.ndarray) -> np.ndarray | None:
        """(H, W) bool person mask, or None without a segmenter."""
        if self.segmenter is None:
            return None
        return self.segmenter.segment(image).binary
