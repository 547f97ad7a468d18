"""The interface every face detector implements, so evaluation code can swap them by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType

import numpy as np

from deid.faces.types import Face


class FaceDetector(ABC):
    """Find every face in an RGB uint8 image; boxes and points in original-image pixels.

    Faces come back sorted by score, highest first, with `score >= score_threshold`.
    Detectors that hold native resources (MediaPipe graphs) release them in `close()`; all
    detectors are context managers so callers need not know which ones do.
    """

    name: str = ""
    score_threshold: float = 0.0

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one RGB uint8 (H, W, 3) image."""

    def detect_frame(self, image: np.ndarray, index: int) -> list[Face]:
        """Faces in frame `index` of a video; detectors that skip frames override this."""
        return self.detect(image)

    @property
    def frame_step(self) -> int:
        """The most consecutive video frames this detector may skip (1: it looks at every one).

        The video runner extends every track by `frame_step - 1` frames at both ends, so a face
        that appears between two looks is still covered."""
        return 1

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces per image; subclasses override this when the model batches natively."""
        return [self.detect(image) for image in images]

    def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release native resources (no-op unless a subclass holds some)."""

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _keep(self, faces: list[Face]) -> list[Face]:
        """Apply the score threshold and sort best first (one rule for every detector)."""
        kept = [face for face in faces if face.score >= self.score_threshold]
        return sorted(kept, key=lambda face: face.score, reverse=True)


def group_by_shape(images: Sequence[np.ndarray]) -> dict[tuple[int, ...], list[int]]:
    """Indices of same-shaped images: batched backends (dlib CNN, MTCNN) need equal sizes."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(tuple(image.shape), []).append(index)
    return groups
