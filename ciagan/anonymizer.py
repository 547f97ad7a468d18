"""CIAGAN as an `Anonymizer`: every face -> CIAGAN crop -> generator -> pasted back.

Per face: the eye-centred 178x218 crop of training (`eye_transform` + `face_crop`), resized
to the model's size, its landmark image and mask rendered exactly as in training, one
generator pass for all faces of a batch, the generated face composited over the crop's own
background, resized back and pasted into the frame through the face mask with a feathered
edge. Pixels outside the pasted masks stay bit-identical.

`from_checkpoint(path)` rebuilds the generator from the checkpoint alone (its stored
hyper-parameters), loading with `weights_only=True`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ciagan.data import to_image_tensor, to_map_tensor, to_uint8_image
from ciagan.nets import Generator
from ciagan.render import face_crop, face_mask, landmark_image, resize_points
from deid.anonymizers.base import NEEDS_FACES, NEEDS_LANDMARKS, Subject, check_subjects
from deid.errors import DeidError, MissingWeightError
from deid.faces.align import CropTransform, eye_transform, paste_back
from deid.faces.types import Face

CROP_SIZE = (178, 218)


@dataclass
class PreparedFace:
    """One face ready for the generator, and what is needed to paste the result back."""

    subject: int
    transform: CropTransform
    crop: np.ndarray  # 178x218 RGB
    crop_mask: np.ndarray  # 178x218 uint8 {0, 255}
    image: np.ndarray  # S x S model input
    landmarks: np.ndarray  # S x S x 3 landmark image
    mask: np.ndarray  # S x S uint8 {0, 255}


def load_checkpoint(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        raise DeidError("CIAGAN needs a checkpoint: add ckpt=<run>/checkpoints/last.ckpt")
    path = Path(path)
    if not path.is_file():
        raise MissingWeightError(
            f"CIAGAN checkpoint {path} not found: train one with "
            "`python train.py experiment=ciagan_demo` (or ciagan_celeba) and pass "
            "<run>/checkpoints/last.ckpt"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or unsafe content
        raise DeidError(
            f"{path}: not a loadable CIAGAN checkpoint ({type(err).__name__})"
        ) from None


def load_generator(path: str | Path | None) -> tuple[Generator, str, dict[str, Any]]:
    """(generator, condition, checkpoint) rebuilt from a CIAGAN GAN checkpoint alone."""
    state = load_checkpoint(path)
    hparams = state.get("hyper_parameters")
    weights = state.get("state_dict", {})
    if not hparams or "generator" not in hparams or "num_identities" not in hparams:
        raise DeidError(f"{path}: not a CIAGAN GAN checkpoint (no generator settings)")
    generator = Generator(
        int(hparams["num_identities"]),
        image_size=int(hparams.get("image_size", 128)),
        **dict(hparams["generator"] or {}),
    )
    prefix = "generator."
    generator.load_state_dict(
        {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    )
    return generator, str(hparams.get("condition", "landmarks")), state


class CiaganAnonymizer:
    """The trained generator behind the Anonymizer protocol."""

    name = "ciagan"
    needs = frozenset({NEEDS_FACES, NEEDS_LANDMARKS})

    def __init__(
        self,
        generator: Generator,
        condition: str = "landmarks",
        identity: int | None = None,
        feather: float = 4.0,
        batch_size: int = 16,
        device: str | torch.device | None = None,
    ) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.generator = generator.to(self.device).eval()
        self.image_size = generator.image_size
        self.num_identities = generator.num_identities
        self.condition = condition
        if identity is not None and not 0 <= identity < self.num_identities:
            raise DeidError(
                f"identity={identity} is out of range: this model knows {self.num_identities} "
                f"identities (0..{self.num_identities - 1})"
            )
        self.identity = identity
        self.feather = feather
        self.batch_size = batch_size

    @classmethod
    def from_checkpoint(cls, path: str | Path | None, **options: Any) -> CiaganAnonymizer:
        generator, condition, _ = load_generator(path)
        return cls(generator, condition=condition, **options)

    # ------------------------------------------------------------------ per face
    def prepare(self, subject_index: int, image: np.ndarray, face: Face) -> PreparedFace:
        transform = eye_transform(face.landmarks, CROP_SIZE)
        crop = face_crop(image, transform)
        crop_points = transform.apply(face.landmarks)
        size = (self.image_size, self.image_size)
        points = resize_points(crop_points, CROP_SIZE, size)
        return PreparedFace(
            subject=subject_index,
            transform=transform,
            crop=crop,
            crop_mask=face_mask(crop_points, CROP_SIZE),
            image=cv2.resize(crop, size, interpolation=cv2.INTER_AREA),
            landmarks=landmark_image(points, size),
            mask=face_mask(points, size),
        )

    def target_identities(self, count: int, seed: int | None) -> list[int]:
        if self.identity is not None:
            return [self.identity] * count
        rng = np.random.default_rng(seed)
        return [int(v) for v in rng.integers(0, self.num_identities, size=count)]

    def subject_identities(self, index: int, subject: Subject) -> list[int]:
        """The caller's target identities for `subject` (one per face), checked."""
        chosen = [int(v) for v in subject.identities or []]
        if len(chosen) != len(subject.faces):
            raise ValueError(
                f"subject {index}: {len(chosen)} identities for {len(subject.faces)} faces"
            )
        bad = [v for v in chosen if not 0 <= v < self.num_identities]
        if bad:
            raise ValueError(
                f"subject {index}: identity {bad[0]} is out of range (0..{self.num_identities - 1})"
            )
        return chosen

    @torch.no_grad()
    def generate(
        self, faces: Sequence[PreparedFace], identities: Sequence[int]
    ) -> list[np.ndarray]:
        """Generated S x S faces composited over each input's background (uint8)."""
        outputs: list[np.ndarray] = []
        for start in range(0, len(faces), self.batch_size):
            chunk = faces[start : start + self.batch_size]
            image = torch.stack([to_image_tensor(f.image) for f in chunk]).to(self.device)
            landmarks = torch.stack([to_map_tensor(f.landmarks) for f in chunk]).to(self.device)
            mask = torch.stack([to_map_tensor(f.mask[..., None]) for f in chunk]).to(self.device)
            target = torch.tensor(identities[start : start + len(chunk)], device=self.device)
            masked = image * (1 - mask)
            condition = landmarks if self.condition == "landmarks" else image * mask
            raw = self.generator(condition, masked, target)
            composite = masked + raw * mask
            outputs.extend(to_uint8_image(c) for c in composite)
        return outputs

    def paste(self, image: np.ndarray, face: PreparedFace, generated: np.ndarray) -> np.ndarray:
        full = cv2.resize(generated, CROP_SIZE, interpolation=cv2.INTER_CUBIC)
        return paste_back(image, full, face.transform, mask=face.crop_mask, feather=self.feather)

    # ------------------------------------------------------------------ protocol
    def anonymize(
        self, subjects: Sequence[Subject], seeds: Sequence[int] | None = None
    ) -> list[np.ndarray]:
        check_subjects(self, subjects)
        prepared: list[PreparedFace] = []
        identities: list[int] = []
        for index, subject in enumerate(subjects):
            faces = [self.prepare(index, subject.image, face) for face in subject.faces]
            seed = None if seeds is None else int(seeds[index])
            prepared.extend(faces)
            if self.identity is None and subject.identities is not None:
                identities.extend(self.subject_identities(index, subject))
            else:  # a fixed identity wins over everything; else drawn from the seed
                identities.extend(self.target_identities(len(faces), seed))
        generated = self.generate(prepared, identities)
        results = [subject.image.copy() for subject in subjects]
        for face, output in zip(prepared, generated, strict=True):
            results[face.subject] = self.paste(results[face.subject], face, output)
        return results
