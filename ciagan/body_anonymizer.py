"""The full-body CIAGAN as an `Anonymizer`: every person of the person mask is replaced.

Per connected component of `subject.person_mask` (cut at `threshold`, grown by `dilate` frame
pixels, at least `min_area` pixels): the square crop of preprocessing
(`deid.bodies.persons.person_region` at the training crop size and margin, which the
checkpoint records), resized to the model's size with the silhouette pose image rendered as in
training, one generator pass for all persons of a batch (`CiaganAnonymizer.generate`: the
generated person inside the silhouette, the crop's own background outside), resized back and
pasted into the frame through the crop's mask with a feathered edge
(`deid.bodies.persons.paste_person`). Pixels outside the (dilated) person components stay
bit-identical.

Target identities, per person: a fixed `identity` wins; else `subject.identities` when given
(aligned with `subject.faces`: a person takes the identity of the face inside it, so a video
person keeps the face track's keyed identity; without faces, one identity per person in
`person_components` order, left to right); persons without one are drawn from the seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ciagan.anonymizer import CiaganAnonymizer, GeneratorInput, load_generator
from ciagan.nets import Generator
from deid.anonymizers.base import NEEDS_PERSON_MASK, Subject, check_subjects
from deid.bodies.persons import (
    PERSON_CROP_SIZE,
    PERSON_MARGIN,
    paste_person,
    person_components,
    person_region,
    resize_mask,
    silhouette_image,
)
from deid.checkpoints import experiment_name, hyper_parameters
from deid.faces.types import Face

MIN_FACE_COVERAGE = 0.3  # a face belongs to a person when this share of its box is inside


def crop_settings(state: dict[str, Any]) -> dict[str, Any]:
    """Crop size and margin of the person crops a checkpoint was trained on (the `crop` its
    module recorded from the training data), or {} when it does not say."""
    crop = hyper_parameters(state).get("crop") or {}
    if crop.get("kind") != "bodies":
        return {}
    return {k: v for k, v in (("crop_size", crop.get("size")), ("margin", crop.get("margin"))) if v}


def face_coverage(face: Face, mask: np.ndarray) -> float:
    """Share of the (clipped) face box inside `mask`."""
    height, width = mask.shape
    x0, y0, x1, y1 = face.box
    x0, y0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    x1, y1 = min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)
    return float(mask[y0:y1, x0:x1].mean()) if x1 > x0 and y1 > y0 else 0.0


class CiaganBodyAnonymizer:
    """The trained full-body generator behind the Anonymizer protocol."""

    name = "ciagan_body"
    needs = frozenset({NEEDS_PERSON_MASK})

    def __init__(
        self,
        generator: Generator,
        identity: int | None = None,
        feather: float = 4.0,
        dilate: int = 2,
        min_area: int = 256,
        threshold: float = 0.5,
        crop_size: int = PERSON_CROP_SIZE,
        margin: float = PERSON_MARGIN,
        batch_size: int = 16,
        device: str | torch.device | None = None,
        condition: str = "pose",
        name: str = "ciagan_body",
    ) -> None:
        """`name`: how results and summaries call this method (the checkpoint's experiment)."""
        self.name = name
        self.model = CiaganAnonymizer(
            generator,
            condition=condition,
            identity=identity,
            feather=feather,
            batch_size=batch_size,
            device=device,
        )
        self.num_identities = self.model.num_identities
        self.image_size = self.model.image_size
        self.identity = identity
        self.feather = float(feather)
        self.dilate = int(dilate)
        self.min_area = int(min_area)
        self.threshold = float(threshold)
        self.crop_size = int(crop_size)
        self.margin = float(margin)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None, **options: Any) -> CiaganBodyAnonymizer:
        """Rebuild the generator from a `train.py experiment=ciagan_body_*` checkpoint alone;
        crop size and margin default to the ones it was trained with."""
        generator, condition, state = load_generator(path)
        options.setdefault("name", experiment_name(state) or cls.name)
        return cls(generator, condition=condition, **{**crop_settings(state), **options})

    # ------------------------------------------------------------------ per person
    def persons(self, person_mask: np.ndarray) -> list[np.ndarray]:
        """The (dilated) person components to replace, left to right."""
        mask = np.asarray(person_mask)
        binary = mask if mask.dtype == bool else mask >= self.threshold
        if self.dilate > 0:
            side = 2 * self.dilate + 1
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
            binary = cv2.dilate(binary.astype(np.uint8), kernel).astype(bool)
        return person_components(binary, self.min_area)

    def prepare(self, subject_index: int, image: np.ndarray, person: np.ndarray) -> GeneratorInput:
        region = person_region(image, person, self.crop_size, self.margin)
        size = self.image_size
        mask = resize_mask(region.mask, size)
        return GeneratorInput(
            subject=subject_index,
            region=region,
            image=cv2.resize(region.crop, (size, size), interpolation=cv2.INTER_AREA),
            pose=silhouette_image(mask),
            mask=mask,
        )

    def identities(
        self, index: int, subject: Subject, persons: Sequence[np.ndarray], seed: int | None
    ) -> list[int]:
        """One target identity per person (see the module docstring)."""
        if self.identity is not None:
            return [self.identity] * len(persons)
        drawn = self.model.target_identities(len(persons), seed)
        given = getattr(subject, "identities", None)
        if given is None:
            return drawn
        given = [int(v) for v in given]
        bad = [v for v in given if not 0 <= v < self.num_identities]
        if bad:
            raise ValueError(
                f"subject {index}: identity {bad[0]} is out of range (0..{self.num_identities - 1})"
            )
        if not subject.faces:
            if len(given) != len(persons):
                raise ValueError(
                    f"subject {index}: {len(given)} identities for {len(persons)} persons"
                )
            return given
        if len(given) != len(subject.faces):
            raise ValueError(
                f"subject {index}: {len(given)} identities for {len(subject.faces)} faces"
            )
        chosen = []
        for person, default in zip(persons, drawn, strict=True):
            cover = [face_coverage(face, person) for face in subject.faces]
            best = int(np.argmax(cover))
            chosen.append(given[best] if cover[best] >= MIN_FACE_COVERAGE else default)
        return chosen

    def paste(
        self, image: np.ndarray, item: GeneratorInput, generated: np.ndarray, person: np.ndarray
    ) -> np.ndarray:
        return paste_person(image, item.region, generated, person, self.feather)

    # ------------------------------------------------------------------ protocol
    def anonymize(
        self, subjects: Sequence[Subject], seeds: Sequence[int] | None = None
    ) -> list[np.ndarray]:
        check_subjects(self, subjects)
        prepared: list[GeneratorInput] = []
        regions: list[np.ndarray] = []
        identities: list[int] = []
        for index, subject in enumerate(subjects):
            assert subject.person_mask is not None  # check_subjects guarantees it
            if subject.person_mask.shape[:2] != subject.image.shape[:2]:
                raise ValueError(
                    f"subject {index}: person mask {subject.person_mask.shape[:2]} != image "
                    f"{subject.image.shape[:2]}"
                )
            persons = self.persons(subject.person_mask)
            seed = None if seeds is None else int(seeds[index])
            identities.extend(self.identities(index, subject, persons, seed))
            prepared.extend(self.prepare(index, subject.image, p) for p in persons)
            regions.extend(persons)
        generated = self.model.generate(prepared, identities)
        results = [subject.image.copy() for subject in subjects]
        for item, output, person in zip(prepared, generated, regions, strict=True):
            results[item.subject] = self.paste(results[item.subject], item, output, person)
        return results
