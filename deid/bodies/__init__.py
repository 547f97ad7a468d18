"""Person segmentation behind one interface: `build_segmenter(name).segment(rgb) -> PersonMasks`;
persons as regions to replace (crops, silhouettes, paste-back) in `deid.bodies.persons`.

Heavy dependencies (mediapipe, torch) load when a segmenter is built, not on import.
"""

from __future__ import annotations

from typing import Any

from deid.bodies.base import PersonMasks, PersonSegmenter, check_rgb, instances_from_union
from deid.bodies.deeplab import DeepLabV3Segmenter
from deid.bodies.mediapipe_selfie import MediaPipeSelfieSegmenter
from deid.errors import unknown_name

SEGMENTERS: dict[str, tuple[type, dict[str, Any]]] = {
    "mediapipe": (MediaPipeSelfieSegmenter, {"model_selection": 0}),
    "mediapipe_landscape": (MediaPipeSelfieSegmenter, {"model_selection": 1}),
    "deeplabv3": (DeepLabV3Segmenter, {}),
}


def build_segmenter(name: str, **kwargs: Any) -> PersonSegmenter:
    """Build a registered segmenter; `kwargs` go to its constructor (e.g. threshold=0.4)."""
    if name not in SEGMENTERS:
        raise unknown_name("person segmenter", name, SEGMENTERS)
    cls, defaults = SEGMENTERS[name]
    return cls(**{**defaults, **kwargs})


__all__ = [
    "SEGMENTERS",
    "DeepLabV3Segmenter",
    "MediaPipeSelfieSegmenter",
    "PersonMasks",
    "PersonSegmenter",
    "build_segmenter",
    "check_rgb",
    "instances_from_union",
]
