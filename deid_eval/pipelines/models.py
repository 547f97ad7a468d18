"""Build the pipelines' detectors and embedders from config specs, on the chosen device.

`device=` in evaluate.yaml picks where the torch models (MTCNN, FaceNet, the FID and silhouette
networks) run; null means CUDA when available, else CPU. dlib and MediaPipe run on the CPU.
"""

from __future__ import annotations

from typing import Any

import torch

from deid.faces import FaceDetector, FaceEmbedder, build_detector, build_embedder

DEVICE_AWARE = frozenset({"mtcnn", "facenet_casia", "facenet_vggface2"})
SPEC_KEYS = frozenset({"name", "threshold", "thresholds"})  # metric settings, not model options


def resolve_device(requested: str | None) -> str:
    if requested in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(requested)


def with_device(name: str, options: dict[str, Any], device: str) -> dict[str, Any]:
    """Add `device` to the options of the models that take one, unless a spec sets it."""
    if name in DEVICE_AWARE and "device" not in options:
        return {**options, "device": device}
    return options


def detector_options(spec: dict[str, Any]) -> dict[str, Any]:
    """The model options of a detector spec (`{name, threshold(s), **options}`)."""
    return {k: v for k, v in spec.items() if k not in SPEC_KEYS}


def thresholds_of(spec: dict[str, Any]) -> list[float]:
    """`thresholds: [0.5, 0.7, 0.9]` (the first is the headline) or one `threshold`."""
    values = spec.get("thresholds") or [spec.get("threshold", 0.0)]
    return [float(v) for v in values]


def make_detector(spec: dict[str, Any], device: str = "cpu") -> FaceDetector:
    name = spec["name"]
    return build_detector(name, **with_device(name, detector_options(spec), device))


def make_embedder(name: str, device: str = "cpu", **options: Any) -> FaceEmbedder:
    return build_embedder(name, **with_device(name, options, device))
