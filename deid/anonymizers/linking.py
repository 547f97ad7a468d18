"""One person, one fake identity across the photos of a camera session.

In a video a person is a track. Photos have no tracks, so the faces of the photos of one camera
session (by default one folder) are linked by identity: each face is embedded with FaceNet
(CASIA-WebFace) and joins the nearest person already seen in that session when the squared
L2 distance is below `threshold`, else it starts a new person. The person's number (in order
of first appearance, photos in sorted order) is what the keyed fake identity is drawn for, so
the same woman gets the same fake identity in the group photo and in her portrait.

Threshold 1.0: on the demo photos (facenet_casia) same-person pairs of different photos have a
median squared distance of 0.88 and different people start at 1.00 (1st percentile 1.25).
Linking the 118 demo photos (5 people, one face each, in name order, so people alternate) gives
at 1.0 14 persons and no person holding two people's faces; at 0.8 33 persons, at 1.1 11 (still
pure). A person whose photos differ more gets two fake identities, which leaks nothing; two
people sharing one would link them, so the threshold stays below where different people begin. Faces too small for FaceNet
(`min_face`) are never linked. Embeddings stay in memory for the run and are never written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from deid.faces import FaceEmbedder
from deid.faces.types import Face

PERSON_PREFIX = "photo-person-"  # track names of photo persons (video tracks are plain numbers)


@dataclass
class Session:
    """The persons seen so far in one camera session: a mean embedding each."""

    sums: list[np.ndarray] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    unlinked: int = 0  # faces too small to link, numbered apart

    def person(self, vector: np.ndarray | None, threshold: float, taken: set[int]) -> str:
        """The person `vector` belongs to (not one of `taken`: the photo's other faces)."""
        if vector is None:
            self.unlinked += 1
            return f"{PERSON_PREFIX}unlinked-{self.unlinked - 1}"
        if self.sums:
            means = np.stack([s / np.linalg.norm(s) for s in self.sums])
            distances = ((means - vector) ** 2).sum(axis=1)
            distances[list(taken)] = np.inf
            best = int(np.argmin(distances))
            if distances[best] < threshold:
                self.sums[best] = self.sums[best] + vector
                self.counts[best] += 1
                taken.add(best)
                return f"{PERSON_PREFIX}{best}"
        self.sums.append(vector.astype(np.float64))
        self.counts.append(1)
        taken.add(len(self.sums) - 1)
        return f"{PERSON_PREFIX}{len(self.sums) - 1}"


@dataclass
class PhotoLinker:
    """`make_embedder` is called on the first photo: a run of videos never loads FaceNet."""

    make_embedder: Callable[[], FaceEmbedder]
    threshold: float = 1.0
    min_face: int = 32
    sessions: dict[str, Session] = field(default_factory=dict)
    _embedder: FaceEmbedder | None = field(default=None, repr=False)

    @property
    def embedder(self) -> FaceEmbedder:
        if self._embedder is None:
            self._embedder = self.make_embedder()
        return self._embedder

    def persons(self, camera: str, image: np.ndarray, faces: Sequence[Face]) -> list[str]:
        """The person name of each face of one photo of session `camera`."""
        session = self.sessions.setdefault(camera, Session())
        large = [i for i, f in enumerate(faces) if max(f.width, f.height) >= self.min_face]
        vectors: dict[int, np.ndarray] = {}
        if large:
            rows = self.embedder.embed([image] * len(large), [faces[i] for i in large])
            vectors = dict(zip(large, np.asarray(rows, dtype=np.float64), strict=True))
        # best-detected faces first, so a clear face founds a person before a doubtful one
        order = sorted(range(len(faces)), key=lambda i: -faces[i].score)
        names: dict[int, str] = {}
        taken: set[int] = set()
        for index in order:
            names[index] = session.person(vectors.get(index), self.threshold, taken)
        return [names[i] for i in range(len(faces))]
