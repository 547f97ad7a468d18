"""Dataset readers for the official on-disk layouts (see data/README.md).

Every reader returns a list of `FaceRecord`s or `PersonRecord`s (records.py); `registry.py` maps
config names to readers. Exports load lazily so `python -m deid.datasets.demo` (run at setup)
does not import torch or pycocotools.

    from deid.datasets import build_face_dataset, RecordDataset
    records = build_face_dataset("celeba", "data/celeba", split="ciagan", subset="train")
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FaceRecord": "records",
    "PersonRecord": "records",
    "RecordDataset": "records",
    "identity_labels": "records",
    "LFWDataset": "lfw",
    "LFWPair": "lfw",
    "parse_pairs": "lfw",
    "ciagan_identities": "celeba",
    "read_celeba": "celeba",
    "read_image_folder": "image_folder",
    "read_demo": "image_folder",
    "read_coco_persons": "coco_persons",
    "read_supervisely": "supervisely",
    "read_mots": "mots",
    "build_dataset": "registry",
    "build_face_dataset": "registry",
    "build_person_dataset": "registry",
    "dataset_names": "registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
