"""One record contract for every dataset reader, and a torch `Dataset` over the records.

Readers return plain lists of records built from the annotation files alone (no image is
decoded at construction), so the evaluation suite, preprocessing and training share one index
and can filter, split or subsample it with list operations. Pixels are read only when a record
is used: `deid.media.read_image` for images, `PersonRecord.load_mask()` for masks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from torch.utils.data import Dataset

from deid.media import read_image

MaskLoader = Callable[[], np.ndarray]


@dataclass(frozen=True)
class FaceRecord:
    """One face image of a known identity."""

    path: Path  # the image file
    identity: str  # the dataset's own identity label (CelebA id, LFW name, folder name)
    image_id: str  # stable and unique within the dataset: the path relative to its root
    split: str  # train / val / test, an LFW fold ("fold3"), or the reader's label


@dataclass(frozen=True)
class PersonRecord:
    """One person instance in an image; its HxW bool mask is decoded on demand."""

    path: Path  # the image file
    image_id: str  # stable and unique within the dataset: the path relative to its root
    instance_id: int  # unique within the image (COCO annotation id, MOTS object id, object #)
    split: str
    mask_loader: MaskLoader = field(repr=False, compare=False)
    bbox: tuple[float, float, float, float] | None = None  # x, y, w, h in pixels when known

    def load_mask(self) -> np.ndarray:
        """Decode this person's mask: (H, W) bool, the size of the image."""
        mask = np.asarray(self.mask_loader())
        return mask if mask.dtype == bool else mask.astype(bool)

    @property
    def key(self) -> str:
        """`image_id#instance_id`: unique within the dataset."""
        return f"{self.image_id}#{self.instance_id}"


R = TypeVar("R", FaceRecord, PersonRecord)
Transform = Callable[[dict[str, Any]], dict[str, Any]]


def identity_labels(records: Sequence[FaceRecord]) -> dict[str, int]:
    """Identity -> class index 0..n-1 in sorted order, so labels do not depend on list order."""
    return {name: i for i, name in enumerate(sorted({r.identity for r in records}))}


class RecordDataset(Dataset, Generic[R]):
    """A map-style torch dataset over records, for `DataLoader` use.

    A sample is a dict: `image` (H, W, 3) uint8 RGB, `index`, `image_id`; face records add
    `identity` and `label` (from `identity_labels`); person records add `mask` (H, W) bool and
    `instance_id`. `transform(sample) -> sample` resizes/augments/converts; without one, images
    of different sizes need a custom `collate_fn`.
    """

    def __init__(
        self,
        records: Sequence[R],
        transform: Transform | None = None,
        labels: dict[str, int] | None = None,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        faces = [r for r in self.records if isinstance(r, FaceRecord)]
        self.labels = labels if labels is not None else identity_labels(faces)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        sample: dict[str, Any] = {
            "image": read_image(record.path),
            "index": index,
            "image_id": record.image_id,
        }
        if isinstance(record, FaceRecord):
            sample["identity"] = record.identity
            sample["label"] = self.labels[record.identity]
        else:
            sample["mask"] = record.load_mask()
            sample["instance_id"] = record.instance_id
        return self.transform(sample) if self.transform is not None else sample
