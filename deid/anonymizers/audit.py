"""`--audit`: does any output face still look like the person it replaced?

The configured face detector runs again over each written output; every face it finds there is
matched by overlap (IoU) to a face of the source, both are embedded with FaceNet (CASIA-WebFace,
L2-normalised), and a pair closer than `threshold` (squared L2, 0..4) is flagged.

Threshold 1.2: measured with `facenet_casia` on the 112 demo photos (5 people, dlib HOG, one
face each), same-person pairs of *different* photos have squared distances of median 0.88,
75th percentile 1.13, 95th 1.47, while different people start at 1.00 (1st percentile 1.25,
median 1.90); at 1.2, 82 % of same-person pairs and 0.5 % of different-person pairs fall below.
FaceNet's own LFW verification thresholds lie at 1.1-1.24. An output compared with its own
source photo (same pose, light and background) is an easier match than two different photos,
so a face that still sits below 1.2 is very likely recognisable; the threshold errs towards
flagging. Tighten it (audit_threshold=1.0) for fewer false alarms, raise it to be stricter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deid.anonymizers.tracking import TrackedFace, iou
from deid.faces import FaceDetector, FaceEmbedder
from deid.faces.types import Face
from deid.media import VideoReader, read_image

DEFAULT_AUDIT_THRESHOLD = 1.2
MIN_MATCH_IOU = 0.3


@dataclass
class AuditReport:
    """How many output faces were compared with their source, and which still match it."""

    checked: int = 0
    flagged: list[dict[str, Any]] = field(default_factory=list)


def match_faces(
    found: Sequence[Face], sources: Sequence[Face], min_iou: float = MIN_MATCH_IOU
) -> list[tuple[int, int]]:
    """Greedy one-to-one (output index, source index) pairs by decreasing IoU >= `min_iou`."""
    scores = sorted(
        ((iou(f.box, s.box), i, j) for i, f in enumerate(found) for j, s in enumerate(sources)),
        reverse=True,
    )
    pairs, used_i, used_j = [], set(), set()
    for score, i, j in scores:
        if score < min_iou:
            break
        if i not in used_i and j not in used_j:
            pairs.append((i, j))
            used_i.add(i)
            used_j.add(j)
    return sorted(pairs)


@dataclass
class Auditor:
    detector: FaceDetector
    embedder: FaceEmbedder
    threshold: float = DEFAULT_AUDIT_THRESHOLD
    min_iou: float = MIN_MATCH_IOU

    def compare(
        self, source: np.ndarray, sources: Sequence[Face], output: np.ndarray
    ) -> tuple[int, list[dict[str, Any]]]:
        """(faces compared, [{face, box, distance}] of those still matching their source)."""
        if not sources:
            return 0, []
        found = self.detector.detect(output)
        pairs = match_faces(found, sources, self.min_iou)
        if not pairs:
            return 0, []
        before = self.embedder.embed([source] * len(pairs), [sources[j] for _, j in pairs])
        after = self.embedder.embed([output] * len(pairs), [found[i] for i, _ in pairs])
        distances = ((np.asarray(before) - np.asarray(after)) ** 2).sum(axis=1)
        flagged = [
            {
                "face": j,
                "box": [round(v, 1) for v in found[i].box],
                "distance": round(float(d), 4),
            }
            for (i, j), d in zip(pairs, distances, strict=True)
            if d < self.threshold
        ]
        return len(pairs), flagged

    def audit_image(self, source: np.ndarray, sources: Sequence[Face], output: Path) -> AuditReport:
        """Compare the written output file (as a viewer decodes it) with its source."""
        checked, flagged = self.compare(source, sources, read_image(output))
        return AuditReport(checked, flagged)

    def audit_video(
        self, source: Path, tracked: Sequence[Sequence[TrackedFace]], output: Path
    ) -> AuditReport:
        """Every frame of the written video against the source frame and its tracked faces."""
        report = AuditReport()
        with VideoReader(source) as src, VideoReader(output) as out:
            for frame, (before, after) in enumerate(zip(src, out, strict=False)):
                if frame >= len(tracked):
                    break
                faces = tracked[frame]
                checked, flagged = self.compare(before, [t.face for t in faces], after)
                report.checked += checked
                report.flagged += [
                    {"frame": frame, "track": faces[item["face"]].track_id, **item}
                    for item in flagged
                ]
        return report
