"""Supervisely Person in the two layouts people have: one PersonRecord per person.

The Supervisely project export (5,711 images), one record per person object:

    root/meta.json    root/<dataset>/img/<image>    root/<dataset>/ann/<image>.json

An annotation has `size` {height, width} and `objects`; person objects have a classTitle
containing "person" ("person_poly", "person_bmp") and one geometry:
  * polygon: `points.exterior` [[x, y], ...] filled, each `points.interior` ring cut out;
  * bitmap: `bitmap.data` = base64 of a zlib-compressed PNG whose alpha (or, without alpha,
    non-zero pixels) is the mask, pasted with its top-left corner at `bitmap.origin` [x, y].
The export has no train/test split: `split` selects a dataset folder ("all" = every one).

The flat folders the VQGAN paper's filtered set (2,667 images) circulates as, one record per
image (instance id 0: the mask is the union of the persons):

    root/images/<name>.png|jpg    root/masks/<stem>.png|jpg   (same stem; non-zero = person)

JPEG masks are cut at 128 (compression noise); PNG masks at non-zero. `split` is "all", or a
subfolder holding `images/` + `masks/` (e.g. `train`). `layout="auto"` picks the export when
`meta.json` exists, else the flat folders.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deid.datasets.layout import check_missing, file_names, require_path
from deid.datasets.records import PersonRecord
from deid.errors import DatasetLayoutError, unknown_name

GEOMETRIES = ("polygon", "bitmap")
LAYOUTS = ("auto", "project", "flat")
_LAYOUT = "Supervisely project export"
_FLAT = "Supervisely flat images/ + masks/"
MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_SUFFIXES = (*MASK_SUFFIXES, ".webp")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetLayoutError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(data, dict):
        raise DatasetLayoutError(f"{path}: expected a JSON object")
    return data


def _ring(points: Any) -> np.ndarray:
    return np.rint(np.asarray(points, dtype=np.float64).reshape(-1, 2)).astype(np.int32)


def polygon_mask(points: dict[str, Any], height: int, width: int) -> np.ndarray:
    """Fill the exterior ring, then clear each interior ring (holes)."""
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [_ring(points["exterior"])], 1)
    holes = [_ring(ring) for ring in points.get("interior", []) if len(ring) >= 3]
    if holes:
        cv2.fillPoly(mask, holes, 0)
    return mask.astype(bool)


def decode_bitmap(data: str) -> np.ndarray:
    """base64 -> zlib -> PNG -> bool mask (alpha channel, else non-zero pixels)."""
    png = zlib.decompress(base64.b64decode(data))
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("bitmap is not a PNG")
    if image.ndim == 3:
        return image[:, :, 3] > 0 if image.shape[2] == 4 else image.any(axis=2)
    return image > 0


def bitmap_mask(bitmap: dict[str, Any], height: int, width: int) -> np.ndarray:
    """Paste the decoded bitmap at `origin` [x, y], clipped to the image."""
    patch = decode_bitmap(bitmap["data"])
    x, y = (int(v) for v in bitmap["origin"])
    mask = np.zeros((height, width), bool)
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + patch.shape[0], height), min(x + patch.shape[1], width)
    if bottom > top and right > left:
        mask[top:bottom, left:right] = patch[top - y : bottom - y, left - x : right - x]
    return mask


def _geometry(obj: dict[str, Any]) -> str:
    return str(obj.get("geometryType") or ("bitmap" if "bitmap" in obj else "polygon"))


def object_mask(obj: dict[str, Any], height: int, width: int) -> np.ndarray:
    """The (height, width) bool mask of one polygon or bitmap object."""
    if _geometry(obj) == "bitmap":
        return bitmap_mask(obj["bitmap"], height, width)
    return polygon_mask(obj["points"], height, width)


def _size(ann: dict[str, Any], path: Path) -> tuple[int, int]:
    try:
        return int(ann["size"]["height"]), int(ann["size"]["width"])
    except (KeyError, TypeError, ValueError):
        raise DatasetLayoutError(f"{path}: missing size.height/size.width") from None


@dataclass(frozen=True)
class SuperviselyMask:
    """Picklable mask loader: re-reads the annotation and rasterises the chosen objects."""

    ann_path: Path
    objects: tuple[int, ...]

    def __call__(self) -> np.ndarray:
        ann = _read_json(self.ann_path)
        height, width = _size(ann, self.ann_path)
        mask = np.zeros((height, width), bool)
        try:
            for index in self.objects:
                mask |= object_mask(ann["objects"][index], height, width)
        except (KeyError, IndexError, TypeError, ValueError, binascii.Error, zlib.error) as err:
            raise DatasetLayoutError(
                f"{self.ann_path}: unreadable person object ({err!r})"
            ) from None
        return mask


def _person_objects(ann: dict[str, Any], path: Path, class_filter: str) -> list[int]:
    chosen = []
    for index, obj in enumerate(ann.get("objects", [])):
        if class_filter not in str(obj.get("classTitle", "")).lower():
            continue
        if _geometry(obj) not in GEOMETRIES:
            raise DatasetLayoutError(
                f"{path}: object {index} ({obj.get('classTitle')}) has geometry "
                f"{_geometry(obj)!r}; supported: {', '.join(GEOMETRIES)}"
            )
        chosen.append(index)
    return chosen


def dataset_names(root: Path) -> list[str]:
    """Dataset folders of the project: subfolders with an ann/ folder."""
    return sorted(p.name for p in root.iterdir() if (p / "ann").is_dir())


@dataclass(frozen=True)
class FlatMask:
    """Picklable mask loader of the flat layout: the mask file, cut at non-zero (PNG) or 128."""

    path: Path

    def __call__(self) -> np.ndarray:
        mask = cv2.imread(str(self.path), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise DatasetLayoutError(f"{self.path}: missing or unreadable mask")
        lossy = self.path.suffix.lower() in (".jpg", ".jpeg")
        return mask >= 128 if lossy else mask > 0


def read_supervisely_flat(
    root: str | Path, split: str = "all", allow_missing: bool = False
) -> list[PersonRecord]:
    """The flat layout (module docstring): one record per image with a mask, sorted by name."""
    root = Path(root)
    base = root if split == "all" else root / split
    images = require_path(base, "images", _FLAT, folder=True)
    masks_dir = require_path(base, "masks", _FLAT, folder=True)
    masks: dict[str, str] = {}
    for name in sorted(file_names(masks_dir)):
        path = Path(name)
        if path.suffix.lower() in MASK_SUFFIXES:
            masks.setdefault(path.stem, name)  # a png and a jpg of one stem: the first sorted
    prefix = "" if split == "all" else f"{split}/"
    present = sorted(
        n
        for n in file_names(images)
        if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_SUFFIXES
    )
    records = [
        PersonRecord(
            images / name,
            f"{prefix}images/{name}",
            0,
            split,
            FlatMask(masks_dir / masks[Path(name).stem]),
        )
        for name in present
        if Path(name).stem in masks
    ]
    image_stems = {Path(name).stem for name in present}
    missing = sorted(f"images/{stem}.*" for stem in masks if stem not in image_stems)
    check_missing(missing, len(masks), images, allow_missing)
    if not records and not missing:
        raise DatasetLayoutError(f"{base}: no image in images/ has a mask in masks/ ({_FLAT})")
    return records


def read_supervisely(
    root: str | Path,
    split: str = "all",
    class_filter: str = "person",
    merge: bool = False,
    allow_missing: bool = False,
    layout: str = "auto",
) -> list[PersonRecord]:
    """Person records, sorted by image: the project export's objects (one per object, or one
    per image with `merge`), or the flat layout's images (module docstring)."""
    root = Path(root)
    if layout not in LAYOUTS:
        raise unknown_name("Supervisely layout", layout, LAYOUTS)
    if layout == "auto" and not (root / "meta.json").is_file():
        base = root if split == "all" else root / split
        layout = "flat" if (base / "images").is_dir() else "project"  # project: names meta.json
    if layout == "flat":
        return read_supervisely_flat(root, split, allow_missing)
    require_path(root, "meta.json", _LAYOUT)
    _read_json(root / "meta.json")
    names = dataset_names(root)
    if not names:
        raise DatasetLayoutError(
            f"{root}: missing <dataset>/ann/ (expected the {_LAYOUT} layout, see data/README.md)"
        )
    if split != "all" and split not in names:
        raise DatasetLayoutError(f"{root}: no dataset {split!r} (found: {', '.join(names)})")
    records: list[PersonRecord] = []
    missing: list[str] = []
    total = 0
    for name in names if split == "all" else [split]:
        ann_dir, img_dir = root / name / "ann", root / name / "img"
        present = file_names(img_dir)
        for ann_path in sorted(ann_dir.glob("*.json")):
            image = ann_path.name[: -len(".json")]
            ann = _read_json(ann_path)
            objects = _person_objects(ann, ann_path, class_filter.lower())
            if not objects:
                continue
            _size(ann, ann_path)
            total += 1
            if image not in present:
                missing.append(f"{name}/img/{image}")
                continue
            groups = [tuple(objects)] if merge else [(i,) for i in objects]
            records += [
                PersonRecord(
                    img_dir / image,
                    f"{name}/img/{image}",
                    group[0] if not merge else 0,
                    name,
                    SuperviselyMask(ann_path, group),
                )
                for group in groups
            ]
    check_missing(missing, total, root, allow_missing)
    return records
