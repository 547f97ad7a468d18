"""Build the pipelines' detectors and embedders from config specs, on the chosen device.

`device=` in evaluate.yaml picks where the torch models (MTCNN, FaceNet, the FID and silhouette
networks) run; null means CUDA when available, else CPU. dlib and MediaPipe run on the CPU.

An embedder name is a built-in one (`deid.faces.EMBEDDERS`) or a trained one that
evaluate.yaml's `embedder:` mapping gives as a config spec (`_target_` + options, with its
checkpoint as `ckpt`), e.g. `pnca`, CIAGAN's identity network: the suite builds it without
knowing the method that trained it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from deid.errors import unknown_name
from deid.faces import EMBEDDERS, FaceDetector, FaceEmbedder, build_detector, build_embedder
from deid.hydra_entry import instantiate_unwrapped
from deid.weights import sha256_of
from deid_eval.provenance import EMBEDDER_WEIGHTS, weight_hashes

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


def check_embedder(name: str, specs: Mapping[str, Any] | None = None) -> None:
    """A one-line error for an embedder name that is neither built in nor given by a spec."""
    if name not in EMBEDDERS and name not in (specs or {}):
        raise unknown_name("face embedder", name, [*sorted(EMBEDDERS), *sorted(specs or {})])


def make_embedder(
    name: str, device: str = "cpu", specs: Mapping[str, Any] | None = None, **options: Any
) -> FaceEmbedder:
    """Embedder `name`: built in, or built from `specs[name]` (a trained one)."""
    check_embedder(name, specs)
    spec = (specs or {}).get(name)
    if spec is None:
        return build_embedder(name, **with_device(name, options, device))
    return instantiate_unwrapped({"device": device, **spec, **options}, f"embedder {name}")


def embedder_hashes(name: str, specs: Mapping[str, Any] | None = None) -> dict[str, str]:
    """What identifies an embedder's weights (cache keys, results): the sha256s of its registry
    weights, or of a trained embedder's checkpoint file (`ckpt`)."""
    check_embedder(name, specs)
    spec = (specs or {}).get(name)
    if spec is None:
        return weight_hashes(EMBEDDER_WEIGHTS[name])
    ckpt = spec.get("ckpt")
    found = ckpt is not None and Path(str(ckpt)).is_file()
    return {f"{name} checkpoint": sha256_of(Path(str(ckpt))) if found else "missing"}
