"""MediaPipe BlazeFace: a fast deep detector that stands in for the paper's SSH detector."""

from __future__ import annotations

import weakref

import numpy as np

from deid.faces.detectors.base import FaceDetector
from deid.faces.types import Face, check_rgb_image
from deid.mediapipe_import import import_mediapipe

_WEIGHTS = {0: "mediapipe_face_short", 1: "mediapipe_face_full"}


class MediaPipeDetector(FaceDetector):
    """BlazeFace via `mediapipe.solutions.face_detection.FaceDetection`.

    `model_selection=0` is the short-range model (faces within ~2 m, 128 px input),
    `1` the full-range one. `score_threshold` is MediaPipe's `min_detection_confidence`.
    Relative boxes and the 6 keypoints (image-left eye, image-right eye, nose tip, mouth centre,
    image-left ear tragion, image-right ear tragion) are converted to original-image pixels.
    The graph is closed by `close()`, by the context manager, or when the object is collected.
    """

    name = "mediapipe"

    def __init__(self, model_selection: int = 0, score_threshold: float = 0.5) -> None:
        from deid.weights import resolve

        if model_selection not in _WEIGHTS:
            raise ValueError(
                f"model_selection must be 0 (short range) or 1 (full range), got {model_selection!r}"
            )
        resolve(_WEIGHTS[model_selection])  # a clear MissingWeightError before MediaPipe's own
        import_mediapipe()
        from mediapipe.python.solutions.face_detection import FaceDetection

        self.model_selection = int(model_selection)
        self.score_threshold = float(score_threshold)
        self._graph = FaceDetection(
            model_selection=self.model_selection,
            min_detection_confidence=self.score_threshold,
        )
        self._finalizer = weakref.finalize(self, self._graph.close)

    def detect(self, image: np.ndarray) -> list[Face]:
        if not self._finalizer.alive:
            raise RuntimeError("this MediaPipe detector was closed")
        image = check_rgb_image(image)
        height, width = image.shape[:2]
        result = self._graph.process(image)
        faces = []
        for detection in result.detections or []:
            location = detection.location_data
            rel = location.relative_bounding_box
            box = (
                rel.xmin * width,
                rel.ymin * height,
                (rel.xmin + rel.width) * width,
                (rel.ymin + rel.height) * height,
            )
            # relative coordinates measure edges (0..1 over the image); points use pixel centres
            points = [(k.x * width - 0.5, k.y * height - 0.5) for k in location.relative_keypoints]
            faces.append(
                Face(box, detection.score[0], landmarks=np.array(points) if points else None)
            )
        return self._keep(faces)

    def close(self) -> None:
        self._finalizer()
