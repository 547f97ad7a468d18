"""Photos of people without mask annotations as a person dataset: the offline segmenter marks
the person.

Why: the VQGAN paper's k-NN re-identification (Table I) needs person masks, and a face set such
as the demo photos has none. Each photo of a face dataset (`photos`: `demo`, `image_folder`)
becomes one `PersonRecord` whose mask is the largest person the segmenter (MediaPipe, offline)
finds; photos where it finds no person covering `min_fraction` of the image are left out when
their mask is first read (`mask_loader` raises) - so readers stay cheap, the segmenter runs
only when a mask is used, and the same photo always gives the same mask.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from deid.datasets.records import FaceRecord, PersonRecord
from deid.errors import DeidError


def persons_of_photos(
    faces: list[FaceRecord], segmenter: str = "mediapipe", min_fraction: float = 0.02
) -> list[PersonRecord]:
    """One person per photo of a face dataset's records (the registry's `segmented_photos`
    reads those records by name: `photos: demo`); a photo listed with several faces is one
    photo."""
    masks = _Masks(segmenter, float(min_fraction))
    photos: dict[Path, FaceRecord] = {}
    for record in faces:
        photos.setdefault(Path(record.path), record)
    return [
        PersonRecord(
            path=record.path,
            image_id=record.image_id,
            instance_id=0,
            split=record.split,
            mask_loader=functools.partial(masks.largest, record.path),
        )
        for record in photos.values()
    ]


class _Masks:
    """The segmenter, built on first use and shared by a dataset's records."""

    def __init__(self, name: str, min_fraction: float) -> None:
        self.name, self.min_fraction = name, min_fraction
        self._segmenter: Any = None

    def largest(self, path: Path) -> np.ndarray:
        from deid.bodies import build_segmenter
        from deid.media import read_image

        if self._segmenter is None:
            self._segmenter = build_segmenter(self.name)
        image = read_image(path)
        found = self._segmenter.segment(image)
        people = found.instances or ([found.binary] if found.binary.any() else [])
        if not people or people[0].mean() < self.min_fraction:
            raise DeidError(f"{path}: the {self.name} segmenter finds no person in this photo")
        return people[0]
