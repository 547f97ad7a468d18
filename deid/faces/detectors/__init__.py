"""Face detectors behind one interface, built by name: `build_detector("mtcnn", ...)`.

Backends are imported only when built, so `import deid.faces` stays cheap.
"""

from __future__ import annotations

import importlib
import inspect
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


__all__ = ["DETECTORS", "FaceDetector", "build_detector", "detector_class"]
