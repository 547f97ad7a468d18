"""MediaPipe selfie segmentation (offline: the models ship inside the mediapipe wheel)."""

from __future__ import annotations

import contextlib
import math

import numpy as np

import deid.weights as weights
from deid.bodies.base import (
    DEFAULT_MIN_INSTANCE_FRACTION,
    PersonMasks,
    check_rgb,
    instances_from_union,
)
from deid.mediapipe_import import import_mediapipe

_WEIGHTS = {0: "mediapipe_selfie", 1: "mediapipe_selfie_landscape"}
SQUARE_ASPECT = 1.4  # images more elongated than this are segmented as overlapping squares
SQUARE_OVERLAP = 0.25


class MediaPipeSelfieSegmenter:
    """Person masks from MediaPipe's selfie segmentation.

    model_selection: 0 = general model (256x256 input), 1 = landscape model (144x256, faster).
    Both were trained for people close to the camera (video calls); small, distant people are
    often missed. The model gives one soft mask for everyone, so `instances` are its connected
    components above `min_instance_fraction` of the image area (`instances_from_components`).

    The model squeezes its input into a square: an image much wider (or taller) than high is
    segmented as overlapping squares of its shorter side, the probabilities combined by maximum
    (measured: the demo's 1104x360 group photo of three portraits, 3.5% person as one image,
    50-58% of each portrait as squares).

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
        import_mediapipe()
        from mediapipe.python.solutions import selfie_segmentation

        self.model_selection = model_selection
        self.threshold = float(threshold)
        self.min_instance_fraction = min_instance_fraction
        self._graph = selfie_segmentation.SelfieSegmentation(model_selection=model_selection)

    def segment(self, image: np.ndarray) -> PersonMasks:
        image = check_rgb(image)
        if self._graph is None:
            raise ValueError("MediaPipeSelfieSegmenter is closed")
        masks = PersonMasks(union=self._probability(image), threshold=self.threshold)
        masks.instances = instances_from_union(masks.binary, self.min_instance_fraction)
        return masks

    def _square(self, image: np.ndarray) -> np.ndarray:
        mask = self._graph.process(np.ascontiguousarray(image)).segmentation_mask
        if mask is None:  # MediaPipe returns no mask only for empty input
            return np.zeros(image.shape[:2], np.float32)
        return np.array(mask, dtype=np.float32)

    def _probability(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        side = min(height, width)
        if max(height, width) <= SQUARE_ASPECT * side:
            return self._square(image)
        long = max(height, width)
        count = math.ceil((long - side) / (side * (1 - SQUARE_OVERLAP))) + 1
        union = np.zeros((height, width), np.float32)
        for k in range(count):
            start = round(k * (long - side) / (count - 1))
            window = (
                np.s_[:, start : start + side] if width > height else np.s_[start : start + side]
            )
            union[window] = np.maximum(union[window], self._square(image[window]))
        return union

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
