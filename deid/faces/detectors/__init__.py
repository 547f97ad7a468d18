"""Face detectors behind one interface, built by name: `build_detector("mtcnn", ...)`.

Backends are imported only when built, so `import deid.faces` stays cheap.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from deid.errors import DeidError
from deid.faces.detectors.base import FaceDetector

# name -> "module:class"; imported lazily so that listing names loads no model library
DETECTORS: dict[str, str] = {
    "dlib_hog": "deid.faces.detectors.dlib_detectors:DlibHogDetector",
    "dlib_cnn": "deid.faces.detectors.dlib_detectors:DlibCnnDetector",
    "mtcnn": "deid.faces.detectors.mtcnn:MtcnnDetector",
    "mediapipe": "deid.faces.detectors.mediapipe_detector:MediaPipeDetector",
}


def detector_class(name: str) -> type[FaceDetector]:
    """The class registered under `name`; an unknown name is a user error listing known ones."""
    try:
        target = DETECTORS[name]
    except KeyError:
        known = ", ".join(sorted(DETECTORS))
        raise DeidError(f"unknown face detector {name!r}; known: {known}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_detector(name: str, **options: Any) -> FaceDetector:
    """Build detector `name` with its options (e.g. `score_threshold=0.5`, `upsample=1`)."""
    cls = detector_class(name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DeidError(
            f"face detector {name!r} has no option {', '.join(unknown)}; "
            f"its options: {', '.join(accepted)}"
        )
    return cls(**options)


def build_detector_spec(spec: Mapping[str, Any]) -> FaceDetector:
    """A detector from a config mapping: `{name, <its options>, tile?, tile_overlap?, whole_image?, scale?}`
    for one detector (tiled and/or downscaled), or `{members: [spec, ...]}` for a union whose
    members may carry `every: k` (run on every k-th video frame only)."""
    from deid.faces.detectors.compose import ScaledDetector, TiledDetector, UnionDetector

    options = dict(spec)
    if "members" in options:
        members = [dict(m) for m in options.pop("members")]
        scale = options.pop("scale", None)  # a union-wide scale applies to every member
        if options.pop("name", "union") not in (None, "union") or options:
            raise DeidError(f"a detector union takes members and scale, not {sorted(options)}")
        for member in members:
            if scale is not None:
                member.setdefault("scale", scale)
        built = [build_detector_spec(m) for m in members]
        return UnionDetector(built, [int(m.get("every", 1)) for m in members])
    if "name" not in options:
        raise DeidError(f"a detector config needs a name; known: {', '.join(sorted(DETECTORS))}")
    name = str(options.pop("name"))
    tile = options.pop("tile", None)
    overlap = float(options.pop("tile_overlap", 0.25))
    whole = bool(options.pop("whole_image", True))
    scale = options.pop("scale", None)
    options.pop("every", None)
    detector = build_detector(name, **options)
    if tile:
        detector = TiledDetector(detector, int(tile), overlap, whole)
    if scale not in (None, 1):
        detector = ScaledDetector(detector, float(scale))
    return detector


__all__ = [
    "DETECTORS",
    "FaceDetector",
    "build_detector",
    "build_detector_spec",
    "detector_class",
]
