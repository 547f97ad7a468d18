"""VQGAN training data: person crops of a segmentation-map manifest as tensors.

An item is one person crop (`deid.prep.segmaps`) at the training size: `image` [3, S, S] in
[-1, 1] (area-averaged resize), `labels` [S, S] long label ids (nearest-neighbour resize, so
every label is one of the map's), `mask` [1, S, S] in {0, 1} (this person). Augmentation is a
horizontal flip, applied to all three alike and decided by the item's draw seed
(`deid.sampling`), so a resumed run sees the very same batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from deid.datasets.coco_stuff import resize_labels
from deid.errors import DeidError
from deid.media import read_image
from deid.prep.bodies import read_mask
from deid.prep.segmaps import SegmapEntry
from deid.sampling import SampleKey


def image_tensor(image: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 RGB -> [3, H, W] float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 127.5 - 1.0


def to_uint8(images: Tensor) -> np.ndarray:
    """[3, H, W] (or [B, 3, H, W], tiled left to right) in [-1, 1] -> (H, W, 3) uint8."""
    if images.dim() == 4:
        images = torch.cat(list(images), dim=2)
    array = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return array.permute(1, 2, 0).numpy().astype(np.uint8)


def onehot(labels: Tensor, num_labels: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Long label ids [B, H, W] -> one-hot [B, num_labels, H, W]."""
    return torch.nn.functional.one_hot(labels, num_labels).permute(0, 3, 1, 2).to(dtype)


def palette(num_labels: int) -> Tensor:
    """[num_labels, 3] colours in [-1, 1]: 0 (background/unlabeled) black, 1 (person) white,
    the others fixed pseudo-random colours."""
    generator = torch.Generator().manual_seed(183)
    colours = torch.rand((max(num_labels, 2), 3), generator=generator) * 2 - 1
    colours[0] = -1.0
    colours[1] = 1.0
    return colours[:num_labels]


def colorize(labels: Tensor, num_labels: int) -> Tensor:
    """Long label ids [B, H, W] -> colour images [B, 3, H, W] in [-1, 1]."""
    colours = palette(num_labels).to(labels.device)
    return colours[labels].permute(0, 3, 1, 2)


class SegmapCrops(Dataset):
    """Person crops + label maps + masks of a manifest at `image_size` (module docstring).

    Indexed by `(index, draw_seed)` keys (`deid.sampling.ResumableSampler`) or plain ints
    (no augmentation). `cache=True` keeps the resized crops in memory (small datasets: the
    demo); `num_labels` is checked against every map read.
    """

    def __init__(
        self,
        entries: Sequence[SegmapEntry],
        root: str | Path,
        image_size: int,
        num_labels: int,
        hflip: float = 0.5,
        cache: bool = False,
    ) -> None:
        if not entries:
            raise DeidError(f"{root}: no person crops to train on")
        self.entries = list(entries)
        self.root = Path(root)
        self.image_size = int(image_size)
        self.num_labels = int(num_labels)
        self.hflip = float(hflip)
        self.cache = cache
        self._cached: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, index: int) -> dict[str, np.ndarray]:
        """The un-augmented item as arrays at `image_size`: image (S, S, 3) uint8, labels
        (S, S) uint8, mask (S, S) uint8 0/255."""
        if index in self._cached:
            return self._cached[index]
        entry = self.entries[index]
        size = self.image_size
        image = read_image(self.root / entry.crop)
        if image.shape[:2] != (size, size):
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        labels = cv2.imread(str(self.root / entry.labels), cv2.IMREAD_UNCHANGED)
        if labels is None or labels.ndim != 2:
            raise DeidError(
                f"{self.root / entry.labels}: missing or not a label map; run the segmentation-"
                "map preprocessing again"
            )
        if int(labels.max()) >= self.num_labels:
            raise DeidError(
                f"{self.root / entry.labels}: label {int(labels.max())} but the model has "
                f"{self.num_labels} labels (datamodule.num_labels)"
            )
        mask = read_mask(self.root / entry.mask)
        item = {
            "image": image,
            "labels": resize_labels(labels, size),
            "mask": resize_labels(mask, size),
        }
        if self.cache:
            self._cached[index] = item
        return item

    def __getitem__(self, key: SampleKey | int) -> dict[str, Any]:
        index, seed = (key, None) if isinstance(key, int) else key
        item = self.load(int(index))
        image, labels, mask = item["image"], item["labels"], item["mask"]
        flip = seed is not None and np.random.default_rng(seed).random() < self.hflip
        if flip:
            image, labels, mask = image[:, ::-1], labels[:, ::-1], mask[:, ::-1]
        return {
            "image": image_tensor(image),
            "labels": torch.from_numpy(np.ascontiguousarray(labels)).long(),
            "mask": torch.from_numpy((np.ascontiguousarray(mask) > 127)[None]).float(),
            "index": int(index),
        }
