"""Detectors built from detectors: tiles for small faces, a downscale for speed, unions for recall.

- `TiledDetector` runs a detector on the whole image and on overlapping tiles. MediaPipe's
  full-range model looks at a 192x192 copy of its input, so in a 640x480 frame it misses faces
  below ~35 px; on 384 px tiles it sees them ~1.7x larger (measured on the demo's moving-faces
  clip: 22 of 180 MTCNN faces missed on the whole frame, none with 2x2 tiles).
- `ScaledDetector` detects on a downscaled copy (`--detect-scale`) and maps boxes back.
- `UnionDetector` keeps every face any member finds (`--detector mediapipe+mtcnn`); a member
  may run only on every k-th video frame (`every`), the tracker's gap filling and track
  extension covering the frames in between (see `deid.anonymizers.video`).
- `FrameSkipDetector` looks at every k-th video frame only (`--detect-every`).

Overlapping boxes of one detector (a face cut by a tile border and found whole in the full
image) are merged into their enclosing box: for anonymization a larger box is safe, a smaller one
is not. Across union members the earlier member's face is kept and later members only add faces
it did not find, so boxes stay consistent from frame to frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from deid.faces.detectors.base import FaceDetector
from deid.faces.types import Face, check_rgb_image

SAME_FACE_OVERLAP = 0.5  # intersection over the smaller box above which two boxes are one face


def overlap_of_smaller(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection area over the smaller box's area (1 when one box contains the other)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(iw * ih / smaller) if smaller > 0 else 0.0


def shifted(face: Face, dx: float, dy: float, scale: float = 1.0) -> Face:
    """`face` with box and landmarks multiplied by `scale`, then moved by (dx, dy)."""
    x0, y0, x1, y1 = face.box
    box = (x0 * scale + dx, y0 * scale + dy, x1 * scale + dx, y1 * scale + dy)
    points = None
    if face.landmarks is not None:
        # pixel-centre coordinates: a point at centre p of a scaled image maps to (p+.5)*s-.5
        points = (face.landmarks + 0.5) * scale - 0.5 + np.array([dx, dy])
    return Face(box, face.score, landmarks=points)


def merge_enclosing(faces: Sequence[Face], overlap: float = SAME_FACE_OVERLAP) -> list[Face]:
    """Merge faces whose boxes overlap (>= `overlap` of the smaller) into their enclosing box.

    The merged face keeps the best score and the landmarks of its best-scoring part.
    """
    groups: list[list[Face]] = []
    for face in sorted(faces, key=lambda f: f.score, reverse=True):
        for group in groups:
            if any(overlap_of_smaller(face.box, other.box) >= overlap for other in group):
                group.append(face)
                break
        else:
            groups.append([face])
    merged = []
    for group in groups:
        best = group[0]
        boxes = np.array([f.box for f in group])
        box = (*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0))
        merged.append(Face(tuple(float(v) for v in box), best.score, landmarks=best.landmarks))
    return merged


def tile_grid(
    width: int, height: int, tile: int, overlap: float
) -> list[tuple[int, int, int, int]]:
    """Tiles (x0, y0, x1, y1) of side <= `tile` covering the image, neighbours overlapping by
    at least `overlap` x tile; empty when the image already fits in one tile."""
    if width <= tile and height <= tile:
        return []
    step = max(1, int(tile * (1 - overlap)))

    def starts(size: int) -> list[int]:
        if size <= tile:
            return [0]
        count = math.ceil((size - tile) / step) + 1
        return [round(i * (size - tile) / (count - 1)) for i in range(count)]

    return [
        (x, y, min(x + tile, width), min(y + tile, height))
        for y in starts(height)
        for x in starts(width)
    ]


class TiledDetector(FaceDetector):
    """`base` on the whole image (unless `whole=False`) plus overlapping `tile` x `tile` crops;
    boxes merged."""

    def __init__(
        self, base: FaceDetector, tile: int = 384, overlap: float = 0.25, whole: bool = True
    ) -> None:
        if tile < 32:
            raise ValueError(f"tile must be at least 32 px, got {tile}")
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"tile overlap must be in [0, 1), got {overlap}")
        self.base = base
        self.tile = int(tile)
        self.overlap = float(overlap)
        self.whole = bool(whole)
        self.name = f"{base.name}[{'' if whole else 'only '}tiles {self.tile}]"
        self.score_threshold = base.score_threshold

    def detect(self, image: np.ndarray) -> list[Face]:
        image = check_rgb_image(image)
        height, width = image.shape[:2]
        grid = tile_grid(width, height, self.tile, self.overlap)
        faces = list(self.base.detect(image)) if self.whole or not grid else []
        for x0, y0, x1, y1 in grid:
            crop = np.ascontiguousarray(image[y0:y1, x0:x1])
            faces += [shifted(face, x0, y0) for face in self.base.detect(crop)]
        return self._keep(merge_enclosing(faces))

    def close(self) -> None:
        self.base.close()


class ScaledDetector(FaceDetector):
    """`base` on a copy resized by `scale` (< 1: faster, misses faces smaller than
    min-face-size / scale); boxes and landmarks mapped back to the original pixels."""

    def __init__(self, base: FaceDetector, scale: float) -> None:
        if not 0.0 < scale <= 4.0:
            raise ValueError(f"detect scale must be in (0, 4], got {scale}")
        self.base = base
        self.scale = float(scale)
        self.name = f"{base.name}[x{self.scale:g}]"
        self.score_threshold = base.score_threshold

    def detect(self, image: np.ndarray) -> list[Face]:
        image = check_rgb_image(image)
        if self.scale == 1.0:
            return self.base.detect(image)
        height, width = image.shape[:2]
        size = (max(1, round(width * self.scale)), max(1, round(height * self.scale)))
        interpolation = cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        small = cv2.resize(image, size, interpolation=interpolation)
        sx = width / size[0]
        return [shifted(face, 0.0, 0.0, sx) for face in self.base.detect(small)]

    def close(self) -> None:
        self.base.close()


class UnionDetector(FaceDetector):
    """Every face any member finds; member i runs on frames whose index is a multiple of
    `every[i]` (photos are frame 0, so every member runs on them)."""

    def __init__(self, members: Sequence[FaceDetector], every: Sequence[int] | None = None):
        if not members:
            raise ValueError("a detector union needs at least one member")
        every = [1] * len(members) if every is None else [int(k) for k in every]
        if len(every) != len(members) or min(every) < 1:
            raise ValueError(f"every must give a positive frame step per member, got {every}")
        self.members = list(members)
        self.every = every
        self.name = "+".join(m.name for m in self.members)
        self.score_threshold = 0.0

    @property
    def frame_step(self) -> int:
        return max(self.every)

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.detect_frame(image, 0)

    def detect_frame(self, image: np.ndarray, index: int) -> list[Face]:
        found: list[Face] = []
        for member, step in zip(self.members, self.every, strict=True):
            if index % step:
                continue
            for face in member.detect(image):
                if all(overlap_of_smaller(face.box, f.box) < SAME_FACE_OVERLAP for f in found):
                    found.append(face)
        return found

    def close(self) -> None:
        for member in self.members:
            member.close()


class FrameSkipDetector(FaceDetector):
    """`base` on every `step`-th video frame only (`--detect-every`); nothing on the others,
    which the tracker fills from the frames around them."""

    def __init__(self, base: FaceDetector, step: int) -> None:
        if step < 1:
            raise ValueError(f"detect every must be >= 1, got {step}")
        self.base = base
        self.step = int(step)
        self.name = base.name if step == 1 else f"{base.name}[every {step}]"
        self.score_threshold = base.score_threshold

    @property
    def frame_step(self) -> int:
        return self.step * self.base.frame_step

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.base.detect(image)

    def detect_frame(self, image: np.ndarray, index: int) -> list[Face]:
        if index % self.step:
            return []
        return self.base.detect_frame(image, index // self.step)

    def close(self) -> None:
        self.base.close()
