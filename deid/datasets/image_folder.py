"""Identity folders (`root/<identity>/<image>`), and the demo set built on them.

Any folder of faces sorted into one subfolder per person works, so users can evaluate on their
own photos. Only `.jpg .jpeg .png .bmp .webp` (any case) directly inside an identity folder
count; other files, files directly under the root and deeper folders are ignored and counted
(logged once), hidden files silently skipped.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from deid.datasets import demo
from deid.datasets.records import FaceRecord
from deid.errors import DatasetLayoutError, unknown_name

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
DEMO_SPLITS = ("train", "val", "all")
log = logging.getLogger("deid.datasets")


@dataclass(frozen=True)
class FolderScan:
    """What `scan_image_folder` found: the records and how many other entries it ignored."""

    records: list[FaceRecord]
    ignored: int


def _visible(names: list[str]) -> list[str]:
    return sorted(n for n in names if not n.startswith("."))


def scan_image_folder(root: str | Path, split: str = "all", prefix: str = "") -> FolderScan:
    """Records of `root/<identity>/<image>` sorted by path; `prefix` is prepended to image ids."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(
            f"{root}: image folder not found (expected {root}/<identity>/*.jpg)"
        )
    records: list[FaceRecord] = []
    ignored = 0
    for entry in _visible(os.listdir(root)):
        folder = root / entry
        if not folder.is_dir():
            ignored += 1
            continue
        for name in _visible(os.listdir(folder)):
            path = folder / name
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                records.append(FaceRecord(path, entry, f"{prefix}{entry}/{name}", split))
            else:
                ignored += 1
    if not records:
        raise DatasetLayoutError(
            f"{root}: no images found under {root} (expected {root}/<identity>/<image> with "
            f"extension {' '.join(sorted(IMAGE_SUFFIXES))}; {ignored} other entries)"
        )
    return FolderScan(records, ignored)


def read_image_folder(root: str | Path, split: str = "all") -> list[FaceRecord]:
    """Face records of an identity-folder tree, each labelled with `split`."""
    scan = scan_image_folder(root, split)
    if scan.ignored:
        log.warning(
            "%s: ignored %d entries that are not identity-folder images", root, scan.ignored
        )
    return scan.records


def read_demo(root: str | Path = demo.DEFAULT_ROOT, split: str = "all") -> list[FaceRecord]:
    """The 5-celebrity demo set: `split` "train", "val" or "all" (both, train first)."""
    if split not in DEMO_SPLITS:
        raise unknown_name("demo split", split, DEMO_SPLITS)
    root = demo.require(Path(root))
    parts = demo.SPLITS if split == "all" else (split,)
    missing = [part for part in parts if not (root / part).is_dir()]
    if missing:
        raise DatasetLayoutError(f"{root}: missing {missing[0]}/ (run `make setup` again)")
    return [r for part in parts for r in scan_image_folder(root / part, part, f"{part}/").records]
