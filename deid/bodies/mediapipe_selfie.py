"""MediaPipe selfie segmentation (offline: the models ship inside the mediapipe wheel)."""

from __future__ import annotations

import contextlib

import numpy as np

import deid.weights as weights
from deid.bodies.base import (
    DEFAULT_MIN_INSTANCE_FRACTION,
    PersonMasks,
    check_rgb,
    instances_from_union,
)

_WEIGHTS = {0: "mediapipe_selfie", 1: "mediapipe_selfie_landscape"}


class MediaPipeSelfieSegmenter:
    """Person masks from MediaPipe's selfie segmentation.

    model_selection: 0 = general model (256x256 input), 1 = landscape model (144x256, faster).
    Both were trained for people close to the camera (video calls); small, distant people are
    often missed. The model gives one soft mask for everyone, so `instances` are its connected
    components above `min_instance_fraction` of the image area (`instances_from_components`).

    Holds a MediaPipe graph: call `close()` or use it as a context manager. Not thread-safe.
    """

    name = "mediapipe"

    def __init__(
        self,
        model_selection: int = 0,
        threshold: float = 0.5,
        min_instance_fraction: float = DEFAULT_MIN_INSTANCE_FRACTION,
    ) -> None:
        if model_selection not in _WEIGHTS:
            raise ValueError(
                f"model_selection must be 0 (general) or 1 (landscape), got {model_selection}"
            )
        # Fails with a clear MissingWeightError (what to pip install) when mediapipe is absent.
        weights.resolve(_WEIGHTS[model_selection])
        from mediapipe.python.solutions import selfie_segmentation

        self.model_selection = model_selection
        self.threshold = float(threshold)
        self.min_instance_fraction = min_instance_fraction
        self._graph = selfie_segmentation.SelfieSegmentation(model_selection=model_selection)

    def segment(self, image: np.ndarray) -> PersonMasks:
        image = check_rgb(image)
        if self._graph is None:
            raise ValueError("MediaPipeSelfieSegmenter is closed")
        mask = self._graph.process(image).segmentation_mask
        if mask is None:  # MediaPipe returns no mask only for empty input
            mask = np.zeros(image.shape[:2], np.float32)
        masks = PersonMasks(union=np.array(mask, dtype=np.float32), threshold=self.threshold)
        masks.instances = instances_from_union(masks.binary, self.min_instance_fraction)
        return masks

    def close(self) -> None:
        if getattr(self, "_graph", None) is not None:
            self._graph.close()
            self._graph = None

    def __enter__(self) -> MediaPipeSelfieSegmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Interpreter shutdown or a failed __init__: MediaPipe or the graph may already be gone.
        with contextlib.suppress(Exception):
            self.close()
