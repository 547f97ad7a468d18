"""`--audit`: did every face get anonymized, and does any still look like its person?

The audit works as an attacker would, independently of the anonymizing detector:
1. an independent detector (by default one the anonymizing detector does not use) finds the
   faces of the *original* image or frame;
2. coverage: each such face must lie (at least `coverage` of its box) inside the regions the
   run anonymized; a face that does not is *missed*, whatever the anonymizing detector saw;
3. similarity: the written output (decoded as a viewer decodes it) and the original are cut at
   each audit face's box and embedded with FaceNet (CASIA-WebFace, L2-normalised); a pair closer
   than `threshold` (squared L2, 0..4) *still matches*. Faces smaller than `min_face` px are
   checked for coverage only: FaceNet cannot tell people apart at that size (measured: an
   18 px background face and its strong blur embed 0.87 apart, two blobs).

Threshold 1.2: measured with `facenet_casia` on the 112 demo photos (5 people, dlib HOG, one
face each), same-person pairs of *different* photos have squared distances of median 0.88,
75th percentile 1.13, 95th 1.47, while different people start at 1.00 (1st percentile 1.25,
median 1.90); at 1.2, 82 % of same-person pairs and 0.5 % of different-person pairs fall below.
FaceNet's own LFW verification thresholds lie at 1.1-1.24. An output compared with its own
source (same pose, light and background) is an easier match than two different photos, so a
face that still sits below 1.2 is very likely recognisable; the threshold errs towards flagging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deid.faces import FaceDetector, FaceEmbedder
from deid.faces.types import Face

Region = tuple[int, int, int, int]

AUDIT_PREFERENCE = ("mtcnn", "dlib_hog", "mediapipe")  # high recall first


def independent_detector(used: set[str]) -> str:
    """The first detector of `AUDIT_PREFERENCE` that the anonymizing detector does not use."""
    for name in AUDIT_PREFERENCE:
        if name not in used:
            return name
    return "dlib_cnn"


@dataclass
class AuditReport:
    """Audit counts of one file (or a whole run) and the faces that failed it."""

    found: int = 0  # faces the audit detector found in the original
    covered: int = 0  # of those, inside an anonymized region
    compared: int = 0  # of those, large enough to compare with FaceNet
    closest: float | None = None  # the smallest output-to-source distance of those compared
    missed: list[dict[str, Any]] = field(default_factory=list)
    matching: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missed and not self.matching

    def add(self, other: AuditReport) -> None:
        self.found += other.found
        self.covered += other.covered
        self.compared += other.compared
        if other.closest is not None:
            self.closest = (
                other.closest if self.closest is None else min(self.closest, other.closest)
            )
        self.missed += other.missed
        self.matching += other.matching

    def to_json(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "covered": self.covered,
            "missed": len(self.missed),
            "still_matching": len(self.matching),
            "compared": self.compared,
            "closest": None if self.closest is None else round(self.closest, 4),
            "missed_faces": self.missed,
            "matching_faces": self.matching,
        }


def coverage(
    box: Sequence[float],
    shape: tuple[int, ...],
    regions: Sequence[Region],
    mask: np.ndarray | None = None,
) -> float:
    """Share of `box` (clipped to an image of `shape`) inside the union of `regions` and the
    boolean `mask`."""
    height, width = shape[:2]
    x0, y0 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
    x1, y1 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
    if x1 <= x0 or y1 <= y0:
        return 1.0  # nothing of it is visible
    inside = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    if mask is not None:
        inside |= mask[y0:y1, x0:x1].astype(bool)
    for rx0, ry0, rx1, ry1 in regions:
        ax0, ay0, ax1, ay1 = max(rx0, x0), max(ry0, y0), min(rx1, x1), min(ry1, y1)
        if ax1 > ax0 and ay1 > ay0:
            inside[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = True
    return float(inside.mean())


@dataclass
class Auditor:
    detector: FaceDetector
    embedder: FaceEmbedder
    threshold: float = 1.2
    min_face: int = 32
    min_coverage: float = 0.5

    def frame(
        self,
        original: np.ndarray,
        output: np.ndarray,
        regions: Sequence[Region],
        mask: np.ndarray | None = None,
        frame: int | None = None,
    ) -> AuditReport:
        """Audit one image or frame: `regions` (and `mask`) are what the run anonymized."""
        faces = self.detector.detect_frame(original, frame or 0)
        report = AuditReport(found=len(faces))
        where = {} if frame is None else {"frame": frame}
        for face in faces:
            share = coverage(face.box, original.shape, regions, mask)
            if share >= self.min_coverage:
                report.covered += 1
            else:
                report.missed.append({**where, **_describe(face), "coverage": round(share, 3)})
        large = [f for f in faces if max(f.width, f.height) >= self.min_face]
        if large:
            vectors = self.embedder.embed(
                [original] * len(large) + [output] * len(large), large * 2
            )
            before, after = vectors[: len(large)], vectors[len(large) :]
            distances = ((before - after) ** 2).sum(axis=1)
            report.compared = len(large)
            report.closest = float(distances.min())
            report.matching += [
                {**where, **_describe(face), "distance": round(float(d), 4)}
                for face, d in zip(large, distances, strict=True)
                if d < self.threshold
            ]
        return report


def _describe(face: Face) -> dict[str, Any]:
    return {"box": [round(v, 1) for v in face.box], "score": round(face.score, 3)}
