"""Name -> reader, so configs (`conf/data/*.yaml`: name, root, split, ...) pick a dataset.

Face datasets give `FaceRecord`s, person datasets `PersonRecord`s. Extra config keys are passed
to the reader as keyword options; an option the reader does not take is a one-line DeidError
rather than a TypeError deep inside a run.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from deid.datasets.celeba import read_celeba
from deid.datasets.coco_persons import read_coco_persons
from deid.datasets.image_folder import read_demo, read_image_folder
from deid.datasets.lfw import LFWDataset
from deid.datasets.mots import read_mots
from deid.datasets.records import FaceRecord, PersonRecord
from deid.datasets.segmented_photos import persons_of_photos
from deid.datasets.supervisely import read_supervisely
from deid.errors import DeidError, unknown_name


def read_lfw(
    root: str | Path,
    split: str | None = None,
    pairs: str | Path | None = None,
    allow_missing: bool = False,
) -> list[FaceRecord]:
    """Every LFW image used by pairs.txt once; `split` "fold0".."fold9" keeps one fold."""
    return LFWDataset(root, pairs, allow_missing).face_records(split)


FACE_DATASETS: dict[str, Callable[..., list[FaceRecord]]] = {
    "celeba": read_celeba,
    "lfw": read_lfw,
    "image_folder": read_image_folder,
    "demo": read_demo,
}


def read_segmented_photos(
    root: str | Path,
    split: str = "all",
    photos: str = "demo",
    segmenter: str = "mediapipe",
    min_fraction: float = 0.02,
) -> list[PersonRecord]:
    """The photos of face dataset `photos` as persons marked by the offline segmenter."""
    return persons_of_photos(build_face_dataset(photos, root, split), segmenter, min_fraction)


PERSON_DATASETS: dict[str, Callable[..., list[PersonRecord]]] = {
    "coco_persons": read_coco_persons,
    "supervisely": read_supervisely,
    "mots": read_mots,
    "segmented_photos": read_segmented_photos,
}


def dataset_names() -> list[str]:
    return sorted(FACE_DATASETS) + sorted(PERSON_DATASETS)


def _call(name: str, reader: Callable[..., Any], root: str | Path, split: str | None, opts: dict):
    kwargs = dict(opts)
    if split is not None:
        kwargs["split"] = split
    try:
        inspect.signature(reader).bind(root, **kwargs)
    except TypeError as err:
        raise DeidError(f"dataset {name!r}: {err}") from None
    return reader(root, **kwargs)


def _unknown(name: str, kind: str) -> DeidError:
    other = "person" if kind == "face" else "face"
    if name in (PERSON_DATASETS if kind == "face" else FACE_DATASETS):
        return DeidError(f"{name!r} is a {other} dataset: use build_{other}_dataset")
    table = FACE_DATASETS if kind == "face" else PERSON_DATASETS
    return unknown_name(f"{kind} dataset", name, sorted(table))


def build_face_dataset(
    name: str, root: str | Path, split: str | None = None, **opts: Any
) -> list[FaceRecord]:
    """Face records of dataset `name` under `root` (split None = the reader's default)."""
    if name not in FACE_DATASETS:
        raise _unknown(name, "face")
    return _call(name, FACE_DATASETS[name], root, split, opts)


def build_person_dataset(
    name: str, root: str | Path, split: str | None = None, **opts: Any
) -> list[PersonRecord]:
    """Person records of dataset `name` under `root` (split None = the reader's default)."""
    if name not in PERSON_DATASETS:
        raise _unknown(name, "person")
    return _call(name, PERSON_DATASETS[name], root, split, opts)


def build_dataset(
    cfg: Mapping[str, Any], for_evaluation: bool = False
) -> list[FaceRecord] | list[PersonRecord]:
    """Records from a `conf/data` mapping: `name`, `root`, optional `split`, reader options.

    `eval_subset` (e.g. "test") names the part the evaluation suite scores: with
    `for_evaluation=True` only records of that split are kept; training ignores it.
    """
    opts = dict(cfg)
    eval_subset = opts.pop("eval_subset", None)
    if for_evaluation and eval_subset is not None:
        records = build_dataset(opts)
        return [r for r in records if r.split == eval_subset]  # type: ignore[return-value]
    name, root = opts.pop("name", None), opts.pop("root", None)
    if name is None or root is None:
        raise DeidError("data config needs `name` and `root`")
    split = opts.pop("split", None)
    if name in PERSON_DATASETS:
        return build_person_dataset(name, root, split, **opts)
    if name in FACE_DATASETS:
        return build_face_dataset(name, root, split, **opts)
    raise unknown_name("dataset", name, dataset_names())
