"""dlib's two face detectors: HOG (CIAGAN's detection-rate metric) and the CNN (MMOD) one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deid.faces.detectors.base import FaceDetector, group_by_shape
from deid.faces.types import Face, check_rgb_image


def rect_to_box(rect: object) -> tuple[float, float, float, float]:
    """dlib rectangles are inclusive; our boxes are half-open, so right/bottom gain 1."""
    return (
        float(rect.left()),  # type: ignore[attr-defined]
        float(rect.top()),  # type: ignore[attr-defined]
        float(rect.right() + 1),  # type: ignore[attr-defined]
        float(rect.bottom() + 1),  # type: ignore[attr-defined]
    )


def box_to_rect(box: Sequence[float]) -> object:
    """Inverse of `rect_to_box` (rounded), for dlib models that take a face rectangle."""
    import dlib

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return dlib.rectangle(x0, y0, x1 - 1, y1 - 1)


class DlibHogDetector(FaceDetector):
    """`dlib.get_frontal_face_detector()`; `run()` exposes the SVM score of each detection.

    `upsample=1` is the protocol setting for the detection-rate metric (protocols.md 6).
    `score_threshold` is passed to dlib as `adjust_threshold` (dlib's own default is 0).
    """

    name = "dlib_hog"

    def __init__(self, upsample: int = 1, score_threshold: float = 0.0) -> None:
        import dlib

        self.upsample = int(upsample)
        self.score_threshold = float(score_threshold)
        self._detector = dlib.get_frontal_face_detector()

    def detect(self, image: np.ndarray) -> list[Face]:
        image = check_rgb_image(image)
        rects, scores, _ = self._detector.run(image, self.upsample, self.score_threshold)
        faces = [Face(rect_to_box(r), s) for r, s in zip(rects, scores, strict=True)]
        return self._keep(faces)


class DlibCnnDetector(FaceDetector):
    """dlib's MMOD CNN detector (`mmod_human_face_detector.dat`).

    `upsample=0` already finds faces of ~80 px (the astronaut) at ~2 s per 512 px image on
    2 CPU cores; each upsampling step costs ~4-6x more. Scores are MMOD confidences
    (~1 for clear faces; dlib keeps detections above 0).
    """

    name = "dlib_cnn"

    def __init__(
        self, upsample: int = 0, score_threshold: float = 0.0, batch_size: int = 8
    ) -> None:
        import dlib

        from deid.weights import resolve

        self.upsample = int(upsample)
        self.score_threshold = float(score_threshold)
        self.batch_size = int(batch_size)
        self._detector = dlib.cnn_face_detection_model_v1(str(resolve("dlib_cnn_face")))

    def _faces(self, detections: Sequence[object]) -> list[Face]:
        faces = [Face(rect_to_box(d.rect), d.confidence) for d in detections]  # type: ignore[attr-defined]
        return self._keep(faces)

    def detect(self, image: np.ndarray) -> list[Face]:
        image = check_rgb_image(image)
        return self._faces(self._detector(image, self.upsample))

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        images = [check_rgb_image(image) for image in images]
        results: list[list[Face]] = [[] for _ in images]
        for indices in group_by_shape(images).values():
            if len(indices) == 1:
                results[indices[0]] = self.detect(images[indices[0]])
                continue
            batch = [images[i] for i in indices]
            found = self._detector(batch, self.upsample, batch_size=self.batch_size)
            for index, detections in zip(indices, found, strict=True):
                results[index] = self._faces(detections)
        return results
