"""Face detection rate on anonymized images (protocols.md section 6, CIAGAN Tables 1-2).

Why: an anonymizer should keep a face a detector still finds (utility). The rate counts
anonymized images with at least one detection scoring >= the threshold, among the images whose
*original* face was detected, so faces the detector never found do not count against a method.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric


class _Detection(Protocol):
    score: float


class Detector(Protocol):
    """Anything with `detect(image) -> detections with .score` (every `deid.faces` detector)."""

    def detect(self, image: np.ndarray) -> Sequence[_Detection]: ...


def detector_name(detector: object) -> str:
    """`deid.faces` detectors carry a registry name; otherwise the class name."""
    return str(getattr(detector, "name", "") or type(detector).__name__)


class DetectionRate(Metric):
    """Fraction of evaluated anonymized images in which the detector finds a face.

    update(images, evaluated): `images` are RGB uint8 (H, W, 3) arrays; `evaluated[i]` says
    whether the original of image i had a detected face. Only evaluated images are run through
    the detector. Report `settings` (detector name and threshold) with the number.

    A detector may drop low scores itself (dlib HOG returns scores >= its own
    `score_threshold`, 0 by default, as `detector(img, 1)` does); a metric threshold below the
    detector's cannot take effect, so that combination warns.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    n_detected: Tensor
    n_evaluated: Tensor

    def __init__(self, detector: Detector, score_threshold: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not callable(getattr(detector, "detect", None)):
            raise TypeError(f"{type(detector).__name__} has no detect(image) method")
        self.detector = detector
        self.score_threshold = float(score_threshold)
        self.detector_name = detector_name(detector)
        own = getattr(detector, "score_threshold", None)
        if own is not None and float(own) > self.score_threshold:
            warnings.warn(
                f"detector {self.detector_name} already drops scores below {own}; "
                f"the metric threshold {self.score_threshold} is effectively {own}",
                UserWarning,
                stacklevel=2,
            )
        self.add_state("n_detected", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("n_evaluated", default=torch.tensor(0), dist_reduce_fx="sum")

    @property
    def settings(self) -> dict[str, Any]:
        """What a result file must state next to the rate."""
        return {"detector": self.detector_name, "score_threshold": self.score_threshold}

    def update(
        self, images: Sequence[np.ndarray], evaluated: Sequence[bool] | np.ndarray | Tensor
    ) -> None:
        if isinstance(evaluated, Tensor):
            evaluated = evaluated.detach().cpu().numpy()
        flags = np.asarray(evaluated, dtype=bool).reshape(-1)
        if len(images) != flags.size:
            raise ValueError(f"{len(images)} images but {flags.size} evaluated flags")
        chosen = [image for image, keep in zip(images, flags.tolist(), strict=True) if keep]
        self._count(self._detect(chosen))

    def update_detections(
        self,
        detections: Sequence[Sequence[_Detection]],
        evaluated: Sequence[bool] | np.ndarray | Tensor,
    ) -> None:
        """Like `update`, with the detector already run: one list of detections per image.

        Lets one detection pass feed the rates at several thresholds (protocols.md 6 asks
        for a few thresholds for deep detectors).
        """
        if isinstance(evaluated, Tensor):
            evaluated = evaluated.detach().cpu().numpy()
        flags = np.asarray(evaluated, dtype=bool).reshape(-1)
        if len(detections) != flags.size:
            raise ValueError(f"{len(detections)} detection lists but {flags.size} evaluated flags")
        self._count([faces for faces, keep in zip(detections, flags.tolist(), strict=True) if keep])

    def _count(self, detections: Sequence[Sequence[_Detection]]) -> None:
        self.n_detected += sum(self._has_face(faces) for faces in detections)
        self.n_evaluated += len(detections)

    def _detect(self, images: list[np.ndarray]) -> list[Sequence[_Detection]]:
        """Use the detector's batched path when it has one (dlib CNN, MTCNN)."""
        if not images:
            return []
        batch = getattr(self.detector, "detect_batch", None)
        if callable(batch):
            return list(batch(images))
        return [self.detector.detect(image) for image in images]

    def _has_face(self, faces: Sequence[_Detection]) -> bool:
        return any(float(face.score) >= self.score_threshold for face in faces)

    def compute(self) -> Tensor:
        if int(self.n_evaluated) == 0:
            warnings.warn("DetectionRate: no evaluated images; rate is NaN", stacklevel=2)
            return torch.tensor(float("nan"))
        return self.n_detected.double() / self.n_evaluated
