"""COCO 2017 person instances: one PersonRecord per non-crowd person, mask via pycocotools.

    root/annotations/instances_{split}2017.json    root/{split}2017/<file_name>

Persons are `category_id == 1` with `iscrowd == 0` (a crowd region covers several people with
one RLE, so it has no single silhouette); `min_area` drops tiny instances by annotated area.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from deid.datasets.layout import check_missing, file_names, require_path
from deid.datasets.records import PersonRecord
from deid.errors import DatasetLayoutError, unknown_name

SPLITS = ("train", "val")
PERSON_CATEGORY = 1
_LAYOUT = "COCO 2017"


@dataclass(frozen=True)
class CocoMask:
    """Picklable mask loader: decodes one annotation with `COCO.annToMask` when called."""

    coco: COCO
    ann_id: int

    def __call__(self) -> np.ndarray:
        with warnings.catch_warnings():  # pycocotools' harmless NumPy 2 `copy=` notice
            warnings.simplefilter("ignore", DeprecationWarning)
            return self.coco.annToMask(self.coco.anns[self.ann_id]).astype(bool)


def load_coco(path: Path) -> COCO:
    """Index an instances file with pycocotools, its progress prints silenced."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetLayoutError(f"{path}: not valid JSON ({err})") from None
    except (KeyError, TypeError, AssertionError) as err:
        raise DatasetLayoutError(f"{path}: not a COCO instances file ({err!r})") from None


def read_coco_persons(
    root: str | Path, split: str = "val", min_area: float = 0.0, allow_missing: bool = False
) -> list[PersonRecord]:
    """Person records of COCO 2017 `split`, ordered by image id then annotation id."""
    if split not in SPLITS:
        raise unknown_name("COCO split", split, SPLITS)
    root = Path(root)
    ann_file = require_path(root, f"annotations/instances_{split}2017.json", _LAYOUT)
    images = require_path(root, f"{split}2017", _LAYOUT, folder=True)
    coco = load_coco(ann_file)
    ann_ids = coco.getAnnIds(catIds=[PERSON_CATEGORY])
    anns = [
        a
        for a in coco.loadAnns(ann_ids)
        if a.get("category_id") == PERSON_CATEGORY
        and not a.get("iscrowd", 0)
        and float(a.get("area", 0.0)) >= min_area
    ]
    anns.sort(key=lambda a: (a["image_id"], a["id"]))
    try:
        names = {a["image_id"]: coco.imgs[a["image_id"]]["file_name"] for a in anns}
    except KeyError as err:
        raise DatasetLayoutError(f"{ann_file}: annotation of unknown image {err}") from None
    present = file_names(images)
    missing = sorted(name for name in set(names.values()) if name not in present)
    check_missing(missing, len(set(names.values())), images, allow_missing)
    absent = set(missing)
    return [
        PersonRecord(
            path=images / names[a["image_id"]],
            image_id=f"{split}2017/{names[a['image_id']]}",
            instance_id=int(a["id"]),
            split=split,
            mask_loader=CocoMask(coco, int(a["id"])),
            bbox=tuple(float(v) for v in a["bbox"]) if "bbox" in a else None,
        )
        for a in anns
        if names[a["image_id"]] not in absent
    ]
