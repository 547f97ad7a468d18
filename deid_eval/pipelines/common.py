"""Pieces every evaluation pipeline shares: batching, per-item seeds, the before/after grid."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch

from deid.faces import Face, center_weighted_face
from deid.media import write_image

T = TypeVar("T")


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for first in range(0, len(items), size):
        yield items[first : first + size]


def stable_seed(key: str, base: int) -> int:
    """A per-item seed from its id: the same item gets the same randomness in every run."""
    digest = hashlib.sha256(f"{base}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def to_tensor_batch(images: Sequence[np.ndarray], size: int = 299) -> torch.Tensor:
    """uint8 RGB arrays of any sizes -> (B, 3, size, size) uint8, resized with area averaging.

    The FID network resizes again (bilinear, as pytorch-fid does); bringing differently sized
    images to one size first lets them share a batch.
    """
    resized = [
        image
        if image.shape[:2] == (size, size)
        else cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        for image in images
    ]
    return torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).contiguous()


@dataclass
class SampleGrid:
    """The first few (original, anonymized) pairs, saved side by side for the report."""

    limit: int
    tile: int = 160
    pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    def add(self, original: np.ndarray, anonymized: np.ndarray) -> None:
        if len(self.pairs) < self.limit:
            self.pairs.append((self._fit(original), self._fit(anonymized)))

    def _fit(self, image: np.ndarray) -> np.ndarray:
        scale = self.tile / max(image.shape[:2])
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        canvas = np.full((self.tile, self.tile, 3), 255, dtype=np.uint8)
        canvas[: small.shape[0], : small.shape[1]] = small
        return canvas

    def save(self, path: Path) -> Path | None:
        """Row 1: originals, row 2: anonymized."""
        if not self.pairs:
            return None
        top = np.concatenate([a for a, _ in self.pairs], axis=1)
        bottom = np.concatenate([b for _, b in self.pairs], axis=1)
        return write_image(path, np.concatenate([top, bottom], axis=0))


class PersonMasker:
    """Person masks for anonymizers that need them (mask-out, body methods) on face datasets.

    Face datasets carry no silhouettes, so MediaPipe's selfie segmentation (offline) supplies
    one per image; methods that only need faces never build the segmenter.
    """

    def __init__(self, anonymizer: object) -> None:
        from deid.anonymizers.base import NEEDS_PERSON_MASK

        self.needed = NEEDS_PERSON_MASK in getattr(anonymizer, "needs", frozenset())
        self._segmenter = None

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        if not self.needed:
            return None
        if self._segmenter is None:
            from deid.bodies import build_segmenter

            self._segmenter = build_segmenter("mediapipe")
        return self._segmenter.segment(image).binary


def faces_from_entries(entries: list[dict]) -> tuple[list[list[Face]], list[Face | None]]:
    """Decode cached `{"shape", "faces"}` entries: every face, and the evaluated one (the
    centre-weighted face, protocols.md 1.4) or None."""
    all_faces = [[Face.from_json(f) for f in entry["faces"]] for entry in entries]
    chosen = [
        center_weighted_face(faces, entry["shape"])
        for faces, entry in zip(all_faces, entries, strict=True)
    ]
    return all_faces, chosen
