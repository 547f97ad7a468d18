"""The Anonymizer protocol: the one interface every de-identification method implements.

The evaluation suite and the anonymize CLI meet methods (CIAGAN, VQGAN, the classic baselines)
only through this protocol, so a new method plugs in by implementing `anonymize`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from deid.faces.types import Face

NEEDS_FACES = "faces"
NEEDS_LANDMARKS = "landmarks"
NEEDS_PERSON_MASK = "person_mask"


@dataclass
class Subject:
    """One image to anonymize and what is known about the people in it.

    `faces` are boxes (+ landmarks where the method needs them) in image pixels;
    `person_mask` is an (H, W) float/bool mask of the people to replace (body methods);
    `person_instances`, when the source knows them (a dataset's annotations), are the persons
    one by one as (H, W) bool masks, so touching people stay apart (methods that use them say
    so; others take the union in `person_mask`, which must cover them);
    `identities` is the target identity of each face, aligned with `faces`, for methods with
    identity control (others ignore it); None lets the method choose (e.g. from the seed).
    """

    image: np.ndarray
    faces: list[Face] = field(default_factory=list)
    person_mask: np.ndarray | None = None
    identities: list[int] | None = None
    person_instances: list[np.ndarray] | None = None


@runtime_checkable
class Anonymizer(Protocol):
    """image + faces/landmarks or person masks in, anonymized image out; batched and seedable."""

    name: str
    needs: frozenset[str]

    def anonymize(
        self, subjects: Sequence[Subject], seeds: Sequence[int] | None = None
    ) -> list[np.ndarray]:
        """Return one RGB uint8 image per subject, same size; `seeds[i]` fixes item i's randomness.

        A method that covers some region with a fallback of its own (e.g. a person a body
        method could not synthesize) lists why in `last_fallbacks`: one list of reasons per
        subject of this call (optional attribute; `FrameAnonymizer` counts them). Calls may
        run on several threads at once (video frames): `last_fallbacks` must give the calling
        thread's latest report (e.g. a property over a `threading.local`).
        """
        ...


def check_subjects(anonymizer: Anonymizer, subjects: Sequence[Subject]) -> None:
    """Fail loudly when a subject lacks what the method needs (never pass a face through)."""
    for index, subject in enumerate(subjects):
        image = subject.image
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3):
            raise ValueError(f"subject {index}: expected an RGB uint8 (H, W, 3) image")
        if NEEDS_PERSON_MASK in anonymizer.needs and subject.person_mask is None:
            raise ValueError(f"subject {index}: {anonymizer.name} needs a person mask")
        if NEEDS_LANDMARKS in anonymizer.needs:
            for face in subject.faces:
                if face.landmarks is None:
                    raise ValueError(f"subject {index}: {anonymizer.name} needs face landmarks")


def face_region(
    face: Face, shape: tuple[int, ...], expand: float = 0.0
) -> tuple[int, int, int, int] | None:
    """The face box grown by `expand` (0.25 = 25% wider and taller, same centre), rounded
    outward and clipped to the image; None when it lies outside."""
    height, width = shape[:2]
    cx, cy = face.center
    half_w, half_h = face.width * (1 + expand) / 2, face.height * (1 + expand) / 2
    x0 = max(int(np.floor(cx - half_w)), 0)
    y0 = max(int(np.floor(cy - half_h)), 0)
    x1 = min(int(np.ceil(cx + half_w)), width)
    y1 = min(int(np.ceil(cy + half_h)), height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1
