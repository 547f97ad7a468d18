"""Identity embedders: what re-identification and verification metrics compare faces with.

Every embedder maps (image, face) pairs to L2-normalised rows, so cosine and Euclidean rankings
agree (protocols.md 2) and squared distances lie in 0..4 (protocols.md 1.6).
"""

from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from deid.errors import DeidError, lookup
from deid.faces.align import crop, facenet_transform
from deid.faces.landmarks import LandmarkPredictor
from deid.faces.types import Face, check_rgb_image


def l2_normalise(vectors: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, eps)


class FaceEmbedder(ABC):
    """`embed(images, faces)`: row i embeds `faces[i]` found in `images[i]`."""

    name: str = ""
    dim: int = 0

    @abstractmethod
    def embed(self, images: Sequence[np.ndarray], faces: Sequence[Face]) -> np.ndarray:
        """(N, dim) float32, L2-normalised; N = len(faces) = len(images)."""

    def _pairs(
        self, images: Sequence[np.ndarray], faces: Sequence[Face]
    ) -> list[tuple[np.ndarray, Face]]:
        if len(images) != len(faces):
            raise ValueError(
                f"embed() pairs images with faces one to one; got {len(images)} images "
                f"and {len(faces)} faces (repeat an image for each of its faces)"
            )
        return [(check_rgb_image(image), face) for image, face in zip(images, faces, strict=True)]


class DlibEmbedder(FaceEmbedder):
    """dlib's 128-d ResNet descriptor (`dlib_face_recognition_resnet_model_v1.dat`).

    dlib aligns each face from its landmarks (its own 150x150 chip, `padding` around it); faces
    without 68 landmarks get them from the 68-point predictor first.
    """

    name = "dlib"
    dim = 128

    def __init__(
        self,
        batch_size: int = 32,
        num_jitters: int = 0,
        padding: float = 0.25,
        landmarks: LandmarkPredictor | None = None,
    ) -> None:
        import dlib

        from deid.weights import resolve

        self.batch_size = int(batch_size)
        self.num_jitters = int(num_jitters)
        self.padding = float(padding)
        self._model = dlib.face_recognition_model_v1(str(resolve("dlib_face_descriptor")))
        self._landmarks = landmarks if landmarks is not None else LandmarkPredictor()

    def _shape(self, image: np.ndarray, face: Face) -> object:
        import dlib

        from deid.faces.detectors.dlib_detectors import box_to_rect

        if face.landmarks is not None and len(face.landmarks) == 68:
            points = dlib.points(
                [dlib.point(int(round(x)), int(round(y))) for x, y in face.landmarks]
            )
            return dlib.full_object_detection(box_to_rect(face.box), points)
        return self._landmarks.shape(image, face.box)

    def embed(self, images: Sequence[np.ndarray], faces: Sequence[Face]) -> np.ndarray:
        import dlib

        pairs = self._pairs(images, faces)
        rows: list[np.ndarray] = []
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start : start + self.batch_size]
            batch_images = [image for image, _ in chunk]
            batch_shapes = []
            for image, face in chunk:
                shapes = dlib.full_object_detections()
                shapes.append(self._shape(image, face))
                batch_shapes.append(shapes)
            found = self._model.compute_face_descriptor(
                batch_images, batch_shapes, self.num_jitters, self.padding
            )
            rows.extend(np.asarray(per_image[0], dtype=np.float32) for per_image in found)
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalise(np.stack(rows))


class FacenetEmbedder(FaceEmbedder):
    """FaceNet InceptionResnetV1 (512-d) with the LFW-protocol crop (protocols.md 1).

    Crop: facenet-pytorch's `extract_face` (`image_size=160`, `margin=14`, area resize), then
    `(x - 127.5) / 128`, then L2 normalisation. `weights` names an entry of `deid.weights`
    (`facenet_casia` ships offline; `facenet_vggface2` is user-supplied and raises
    `MissingWeightError` when absent).
    """

    dim = 512

    def __init__(
        self,
        weights: str = "facenet_casia",
        batch_size: int = 32,
        image_size: int = 160,
        margin: float = 14,
        device: str = "cpu",
    ) -> None:
        import torch
        from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1

        from deid.weights import load_state_dict

        state = load_state_dict(weights)
        # facenet-pytorch's own files carry the training classifier; embeddings do not use it
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        model = InceptionResnetV1(pretrained=None, classify=False)
        model.load_state_dict(state)
        self.name = weights
        self.batch_size = int(batch_size)
        self.image_size = int(image_size)
        self.margin = float(margin)
        self.device = torch.device(device)
        self._model = model.to(self.device).eval()

    def crop_face(self, image: np.ndarray, face: Face) -> np.ndarray:
        """The (image_size, image_size, 3) uint8 crop the network sees."""
        transform = facenet_transform(face.box, image.shape, self.image_size, self.margin)
        return crop(image, transform, interpolation="area")

    def embed_crops(self, crops: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Embed ready crops (N, image_size, image_size, 3) uint8 RGB, e.g. anonymizer output."""
        import torch

        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(
                f"expected crops (N, {self.image_size}, {self.image_size}, 3), got {crops.shape}"
            )
        rows = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch_size):
                batch = torch.from_numpy(
                    np.ascontiguousarray(crops[start : start + self.batch_size])
                )
                batch = (batch.permute(0, 3, 1, 2).float() - 127.5) / 128.0
                rows.append(self._model(batch.to(self.device)).float().cpu().numpy())
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalise(np.concatenate(rows))

    def embed(self, images: Sequence[np.ndarray], faces: Sequence[Face]) -> np.ndarray:
        pairs = self._pairs(images, faces)
        if not pairs:
            return np.zeros((0, self.dim), np.float32)
        return self.embed_crops(np.stack([self.crop_face(image, face) for image, face in pairs]))


# name -> ("module:class", fixed options)
EMBEDDERS: dict[str, tuple[str, dict[str, Any]]] = {
    "dlib": ("deid.faces.embedders:DlibEmbedder", {}),
    "facenet_casia": ("deid.faces.embedders:FacenetEmbedder", {"weights": "facenet_casia"}),
    "facenet_vggface2": ("deid.faces.embedders:FacenetEmbedder", {"weights": "facenet_vggface2"}),
}


def build_embedder(name: str, **options: Any) -> FaceEmbedder:
    """Build embedder `name` (`dlib`, `facenet_casia`, `facenet_vggface2`) with its options."""
    target, fixed = lookup(EMBEDDERS, name, "face embedder")
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", *fixed)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DeidError(
            f"face embedder {name!r} has no option {', '.join(unknown)}; "
            f"its options: {', '.join(accepted)}"
        )
    return cls(**fixed, **options)
