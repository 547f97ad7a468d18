"""COCO-Stuff label maps (the `stuffthingmaps_trainval2017` PNGs) in taming's label indexing.

    root/stuffthingmaps_trainval2017/{split}2017/<image file stem>.png

Each PNG holds, per pixel, the COCO-Stuff class id minus one (0 = person, ..., 181), and 255
for unlabeled pixels. Like taming-transformers we add one, modulo 256, so 0 = unlabeled,
1 = person, ..., 182: 183 labels, one-hot encoded by the segmentation condition stage. A value
other than 0..181 or 255 is not a COCO-Stuff map and is an error.

The same indexing serves datasets that only know persons: label 0 = background (unlabeled),
1 = person (`PERSON_LABEL`), so a 2-label map is the first two labels of the COCO-Stuff one.
Label maps are resized with nearest neighbour only (`resize_labels`): interpolating label ids
would invent labels along every boundary.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from deid.datasets.layout import require_path
from deid.errors import DatasetLayoutError

STUFF_FOLDER = "stuffthingmaps_trainval2017"
NUM_LABELS = 183  # 0 unlabeled + 182 COCO-Stuff classes (ids 1..182)
BACKGROUND_LABEL = 0  # "unlabeled" in COCO-Stuff; everything but a person for person datasets
PERSON_LABEL = 1
UNLABELED_VALUE = 255  # in the PNGs
_LAYOUT = "COCO-Stuff stuffthingmaps_trainval2017"


def stuff_map_path(root: str | Path, image_id: str) -> Path:
    """The label PNG of a COCO image id (`val2017/000000000139.jpg` -> `.../val2017/...139.png`)."""
    image = PurePosixPath(image_id)
    return Path(root) / STUFF_FOLDER / image.parent / f"{image.stem}.png"


def check_stuff_root(root: str | Path, split: str) -> Path:
    """The folder of `split`'s maps, or a DatasetLayoutError naming what is missing."""
    return require_path(Path(root), f"{STUFF_FOLDER}/{split}2017", _LAYOUT, folder=True)


def stuff_labels(values: np.ndarray) -> np.ndarray:
    """PNG values (id - 1, 255 unlabeled) -> labels 0..182 (uint8), 0 = unlabeled."""
    values = np.asarray(values)
    bad = (values > NUM_LABELS - 2) & (values != UNLABELED_VALUE)
    if bad.any():
        raise ValueError(
            f"not a COCO-Stuff label map: value {int(values[bad][0])} (expected 0..181 or 255)"
        )
    return ((values.astype(np.uint16) + 1) % 256).astype(np.uint8)


def read_stuff_map(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A COCO-Stuff PNG as (H, W) uint8 labels 0..182; `shape` (H, W) is checked when given."""
    values = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if values is None:
        raise DatasetLayoutError(f"{path}: missing or unreadable COCO-Stuff label map")
    if values.ndim != 2:
        raise DatasetLayoutError(f"{path}: a label map has one channel, this has {values.shape}")
    if shape is not None and values.shape != tuple(shape):
        raise DatasetLayoutError(f"{path}: label map {values.shape} vs image {tuple(shape)}")
    return stuff_labels(values)


def person_labels(person: np.ndarray) -> np.ndarray:
    """A person mask (bool or 0/255) as a 2-label map: 1 = person, 0 = background."""
    return np.where(np.asarray(person) > 0, PERSON_LABEL, BACKGROUND_LABEL).astype(np.uint8)


def resize_labels(labels: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a label map to `size` (side, or (width, height)) with nearest neighbour: every
    output label is one of the input's."""
    width, height = (size, size) if isinstance(size, int) else size
    if labels.shape[:2] == (height, width):
        return labels.copy()
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
