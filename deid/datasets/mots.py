"""MOTS (KITTI MOTS / MOTSChallenge): one PersonRecord per pedestrian per frame.

    root/{split}/images/<seq>/<frame:06d>.jpg|png
    root/instances/<seq>/<frame:06d>.png      16-bit: object id = class_id * 1000 + instance
    root/instances_txt/<seq>.txt              "frame obj_id class_id height width rle"

Object id // 1000 is the class (2 pedestrian, 1 car); id 10000 marks ignore regions. The index
comes from instances_txt when present (no image decoding, masks from its RLE); otherwise each
instance PNG is decoded once to list its ids, and masks come from the PNG.
The object id is kept as `instance_id`: it is the track id, stable across a sequence's frames.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from deid.datasets.layout import check_missing, require_path
from deid.datasets.records import PersonRecord
from deid.errors import DatasetLayoutError

PEDESTRIAN = 2
IGNORE_ID = 10000
_LAYOUT = "MOTS"
_IMAGE_SUFFIXES = (".jpg", ".png")


@dataclass(frozen=True)
class MotsPngMask:
    """Picklable loader: the pixels of one object id in a 16-bit instance PNG."""

    png: Path
    obj_id: int

    def __call__(self) -> np.ndarray:
        return read_instance_png(self.png) == self.obj_id


@dataclass(frozen=True)
class MotsRleMask:
    """Picklable loader: one line's COCO-style compressed RLE."""

    height: int
    width: int
    counts: str

    def __call__(self) -> np.ndarray:
        rle = {"size": [self.height, self.width], "counts": self.counts.encode("ascii")}
        with warnings.catch_warnings():  # pycocotools' harmless NumPy 2 `copy=` notice
            warnings.simplefilter("ignore", DeprecationWarning)
            return mask_utils.decode(rle).astype(bool)


def read_instance_png(path: Path) -> np.ndarray:
    """The object-id map of an instance PNG as int64 (16-bit values kept, not rescaled)."""
    try:
        with Image.open(path) as img:
            return np.asarray(img).astype(np.int64)
    except OSError as err:
        raise DatasetLayoutError(f"{path}: unreadable instance PNG ({err})") from None


def _frame_image(images: Path, seq: str, frame: int) -> Path | None:
    for suffix in _IMAGE_SUFFIXES:
        path = images / seq / f"{frame:06d}{suffix}"
        if path.is_file():
            return path
    return None


def _from_txt(path: Path, class_id: int) -> list[tuple[int, int, MotsRleMask]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6 or not all(f.isdigit() for f in fields[:5]):
            raise DatasetLayoutError(
                f"{path}:{number}: expected 'frame obj_id class_id height width rle'"
            )
        frame, obj_id, cls, height, width = (int(f) for f in fields[:5])
        if cls == class_id and obj_id != IGNORE_ID:
            rows.append((frame, obj_id, MotsRleMask(height, width, fields[5])))
    return rows


def _from_pngs(folder: Path, class_id: int) -> list[tuple[int, int, MotsPngMask]]:
    rows = []
    for png in sorted(folder.glob("*.png")):
        if not png.stem.isdigit():
            continue
        ids = np.unique(read_instance_png(png))
        for obj_id in ids.tolist():
            if obj_id != IGNORE_ID and obj_id // 1000 == class_id:
                rows.append((int(png.stem), int(obj_id), MotsPngMask(png, int(obj_id))))
    return rows


def read_mots(
    root: str | Path, split: str = "train", class_id: int = PEDESTRIAN, allow_missing: bool = False
) -> list[PersonRecord]:
    """Records of every `class_id` object (pedestrians by default), by sequence and frame."""
    root = Path(root)
    images = require_path(root, f"{split}/images", _LAYOUT, folder=True)
    txt_dir, png_dir = root / "instances_txt", root / "instances"
    if not txt_dir.is_dir() and not png_dir.is_dir():
        require_path(root, "instances", _LAYOUT, folder=True)
    sequences = sorted(p.name for p in images.iterdir() if p.is_dir())
    records: list[PersonRecord] = []
    frames: set[str] = set()
    missing: set[str] = set()
    for seq in sequences:
        txt = txt_dir / f"{seq}.txt"
        if txt.is_file():
            rows = _from_txt(txt, class_id)
        elif (png_dir / seq).is_dir():
            rows = _from_pngs(png_dir / seq, class_id)
        else:
            raise DatasetLayoutError(f"{root}: no annotations for sequence {seq}")
        for frame, obj_id, loader in sorted(rows, key=lambda r: (r[0], r[1])):
            frames.add(f"{split}/images/{seq}/{frame:06d}.*")
            image = _frame_image(images, seq, frame)
            if image is None:
                missing.add(f"{split}/images/{seq}/{frame:06d}.*")
                continue
            image_id = f"{split}/images/{seq}/{image.name}"
            records.append(PersonRecord(image, image_id, obj_id, split, loader))
    check_missing(sorted(missing), len(frames), root, allow_missing)
    return records
