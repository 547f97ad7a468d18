"""CIAGAN training data: preprocessed face crops -> (source, pair, target-identity) samples.

An item holds the source face with its pose image (the landmark image) and face mask, a *pair*
face (same identity with probability `same_prob`, used by the identity network's contrastive
step) and a *target* face whose identity the generator is asked to produce. Landmark images and
masks are rendered from the manifest at the training resolution, then augmented jointly with
the image.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
from torch.utils.data import Dataset

from ciagan.tensors import to_image_tensor, to_map_tensor
from deid.errors import DeidError, unknown_name
from deid.faces.render import face_mask, landmark_image, resize_points
from deid.media import read_image
from deid.prep.faces import FaceEntry
from deid.sampling import SampleKey

TARGET_RULES = ("different", "pair", "any")


@dataclass(frozen=True)
class AugmentConfig:
    """Joint geometric + image-only photometric augmentation (albumentations)."""

    hflip: float = 0.5
    rotate: float = 5.0  # degrees
    scale: float = 0.05  # +- fraction
    translate: float = 0.03  # +- fraction of the side
    color: float = 0.0  # brightness/contrast/saturation jitter strength, 0 = off

    def build(self) -> A.Compose | None:
        steps: list[A.BasicTransform] = []
        if self.hflip > 0:
            steps.append(A.HorizontalFlip(p=self.hflip))
        if self.rotate > 0 or self.scale > 0 or self.translate > 0:
            steps.append(
                A.Affine(
                    rotate=(-self.rotate, self.rotate),
                    scale=(1 - self.scale, 1 + self.scale),
                    translate_percent=(-self.translate, self.translate),
                    border_mode=cv2.BORDER_REFLECT_101,
                    interpolation=cv2.INTER_LINEAR,
                    mask_interpolation=cv2.INTER_NEAREST,
                    p=1.0,
                )
            )
        if self.color > 0:
            strength = self.color
            steps.append(
                A.ColorJitter(brightness=strength, contrast=strength, saturation=strength, hue=0)
            )
        if not steps:
            return None
        return A.Compose(steps, additional_targets={"pose": "mask"})


def identity_index(entries: Sequence[FaceEntry]) -> dict[str, int]:
    """Identity -> class index in sorted order (independent of manifest order)."""
    return {name: i for i, name in enumerate(sorted({e.identity for e in entries}))}


class FaceTriplets(Dataset):
    """Map-style dataset keyed by `(index, draw_seed)` from `ResumableSampler`.

    Tensors: `image`, `pair_image`, `target_image` (3, S, S) in [-1, 1]; `pose` (the
    landmark image, 3, S, S) and `mask` (1, S, S) in {0, 1}; `label`, `pair_label`, `target_label` (class
    indices); `same` (float, 1 = pair shares the source identity); `index`.
    """

    def __init__(
        self,
        entries: Sequence[FaceEntry],
        root: str | Path,
        image_size: int = 128,
        same_prob: float = 0.5,
        target_rule: str = "different",
        augment: AugmentConfig | None = None,
        labels: dict[str, int] | None = None,
    ) -> None:
        if target_rule not in TARGET_RULES:
            raise unknown_name("target rule", target_rule, TARGET_RULES)
        if not entries:
            raise DeidError(f"{root}: the manifest has no faces for this split")
        self.entries = list(entries)
        self.root = Path(root)
        self.image_size = image_size
        self.same_prob = same_prob
        self.target_rule = target_rule
        self.labels = labels if labels is not None else identity_index(self.entries)
        self.augment = (augment or AugmentConfig()).build()
        by_label: dict[int, list[int]] = defaultdict(list)
        for index, entry in enumerate(self.entries):
            by_label[self.labels[entry.identity]].append(index)
        self.by_label = dict(by_label)
        self.label_list = sorted(self.by_label)
        self._label_position = {label: i for i, label in enumerate(self.label_list)}
        if len(self.label_list) < 2 and target_rule == "different":
            raise DeidError("target_rule=different needs at least two identities in the data")

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def num_identities(self) -> int:
        return len(self.labels)

    def _label(self, index: int) -> int:
        return self.labels[self.entries[index].identity]

    def _other_photo(self, index: int, rng: np.random.Generator) -> int:
        """Another face of the same identity (itself when it is the only one)."""
        choices = [i for i in self.by_label[self._label(index)] if i != index]
        return int(rng.choice(choices)) if choices else index

    def _other_identity(self, label: int, rng: np.random.Generator) -> int:
        """Uniform over the other identities, without building their list for every item."""
        position = self._label_position[label]
        pick = int(rng.integers(len(self.label_list) - 1))
        return self.label_list[pick + (pick >= position)]

    def _photo_of(self, label: int, rng: np.random.Generator) -> int:
        return int(rng.choice(self.by_label[label]))

    def _pair(self, index: int, rng: np.random.Generator) -> int:
        if rng.random() < self.same_prob or len(self.label_list) < 2:
            return self._other_photo(index, rng)
        return self._photo_of(self._other_identity(self._label(index), rng), rng)

    def _target(self, index: int, pair: int, rng: np.random.Generator) -> int:
        if self.target_rule == "pair":
            return pair
        label = self._label(index)
        if self.target_rule == "different":
            return self._photo_of(self._other_identity(label, rng), rng)
        return self._photo_of(int(rng.choice(self.label_list)), rng)

    def load(self, index: int, seed: int | None = None) -> dict[str, np.ndarray]:
        """One face at training size: image, pose (landmark) image and mask (uint8, HxW[x3])."""
        entry = self.entries[index]
        crop = read_image(self.root / entry.crop)
        height, width = crop.shape[:2]
        size = (self.image_size, self.image_size)
        image = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        points = resize_points(entry.crop_landmarks(), (width, height), size)
        sample = {
            "image": image,
            "pose": landmark_image(points, size),
            "mask": face_mask(points, size),
        }
        if self.augment is not None and seed is not None:
            self.augment.set_random_seed(seed)
            sample = self.augment(**sample)
        return sample

    def __getitem__(self, key: SampleKey | int) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (int(key), int(key))
        rng = np.random.default_rng(seed)
        pair = self._pair(index, rng)
        target = self._target(index, pair, rng)
        aug_seeds = rng.integers(0, 2**31 - 1, size=3)
        source = self.load(index, int(aug_seeds[0]))
        pair_face = self.load(pair, int(aug_seeds[1]))
        target_face = self.load(target, int(aug_seeds[2]))
        return {
            "image": to_image_tensor(source["image"]),
            "pose": to_map_tensor(source["pose"]),
            "mask": to_map_tensor(source["mask"][..., None])[:1],
            "label": self._label(index),
            "pair_image": to_image_tensor(pair_face["image"]),
            "pair_label": self._label(pair),
            "same": float(self._label(pair) == self._label(index)),
            "target_image": to_image_tensor(target_face["image"]),
            "target_label": self._label(target),
            "index": index,
        }


class FaceImages(FaceTriplets):
    """Single labelled faces (identity pre-training and evaluation): `image`, `label`, `index`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("target_rule", "any")
        super().__init__(*args, **kwargs)

    def __getitem__(self, key: SampleKey | int) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (int(key), None)
        face = self.load(index, seed)
        return {
            "image": to_image_tensor(face["image"]),
            "label": self._label(index),
            "index": index,
        }
