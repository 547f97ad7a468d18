"""Body preprocessing: every person -> a square crop + its silhouette mask + a manifest row.

    python -m deid.prep.bodies data=mots|coco_persons|supervisely|demo|image_folder
        [segmenter=mediapipe] [out=DIR] [workers=N] [limit=N] [crop.size=256] [crop.margin=0.1]

For full-body methods (the CIAGAN body variant: "the silhouette of a person suffices as a pose
prior"; the VQGAN pipeline). Where the masks come from depends on the dataset:

- person datasets (`PersonRecord`s: MOTS, COCO persons, Supervisely) bring one mask per person;
  the identity is the MOTS track (`<sequence>/<object id>`: object ids are only unique within
  a sequence) or the instance key (`<image id>#<instance id>`: one person, one image);
- face / identity-folder datasets (`FaceRecord`s, e.g. data=demo) are segmented with a
  `deid.bodies` segmenter (MediaPipe selfie segmentation by default: works offline, made for
  people near the camera, i.e. the upper bodies of portrait photos); one person per image: the
  largest connected component, if it covers `min_fraction` of the image; the identity is the
  dataset's.

Per person: `deid.bodies.persons.person_region` (the square crop centred on the mask's box,
grown by `margin` per side, at `crop.size`; the mask cut with the same map). Written to
`DIR/crops/<image id without suffix>_<person>.png` and `DIR/masks/..._<person>.png` (uint8
0/255); `person` is the instance id (person datasets) or 0. The manifest row (`BodyEntry`) keeps
the source -> crop transform, so an output pastes back into the frame. Persons whose mask has
fewer than `min_area` pixels, images without a person, unreadable files and any per-image
exception go to failures.csv with a reason; nothing stops the run.

Runs on `workers` processes (every core by default; at most one per 32 images), resumable like
the face preprocessing (`deid.prep.run`): images already in manifest.csv or failures.csv are
skipped, so the same command continues after a crash.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import cv2
import hydra
import numpy as np
from omegaconf import DictConfig

from deid.bodies.persons import (
    PERSON_CROP_SIZE,
    PERSON_MARGIN,
    mask_box,
    person_components,
    person_region,
)
from deid.errors import BadInputError, DeidError
from deid.faces.align import CropTransform, RegionCrop
from deid.media import read_image, write_png_fast
from deid.prep.manifest import (
    ERROR_FAILURE,
    IMAGE_FAILURES,
    ImageResult,
    failure_row,
    read_entries,
    read_failures,
)
from deid.prep.run import (
    crop_stems,
    dataset_records,
    dataset_settings,
    run_from_hydra,
    run_preprocessing,
)

IMAGES_PER_WORKER = 32  # a worker process takes seconds to start: fewer images, fewer workers
SETTINGS_VERSION = 1
FAILURE_REASONS = {
    **IMAGE_FAILURES,
    "no_person": "the segmenter found no person covering min_fraction of the image",
    "too_small": "the person's mask has fewer than min_area pixels",
    "bad_mask": "the person's mask does not have the image's size",
    **ERROR_FAILURE,
}


@dataclass(frozen=True, eq=False)
class BodyEntry:
    """One person crop of the body manifest (a row of manifest.csv)."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "source",
        "identity",
        "split",
        "person",
        "persons_in_image",
        "status",
        "area",
        "box",
        "transform",
        "crop",
        "mask",
    )
    INDEX: ClassVar[str] = "person"
    COUNT: ClassVar[str] = "persons_in_image"
    COMMAND: ClassVar[str] = "python -m deid.prep.bodies data=<dataset> out={out}"

    source: str  # the image id (path relative to the dataset root)
    identity: str  # dataset identity, MOTS `<sequence>/<track id>`, or `<image id>#<instance>`
    split: str
    person: int  # instance id in the dataset, 0 for segmented images
    box: tuple[int, int, int, int]  # the mask's box in the source image (edge coordinates)
    area: int  # mask pixels in the source image
    transform: CropTransform  # source image -> crop
    crop: str  # crop PNG, relative to the output folder
    mask: str  # mask PNG (0/255), relative to the output folder
    status: str = "ok"

    @property
    def key(self) -> tuple[str, int]:
        return self.source, self.person

    def to_row(self, count: int) -> dict[str, str]:
        return {
            "source": self.source,
            "identity": self.identity,
            "split": self.split,
            "person": str(self.person),
            "persons_in_image": str(int(count)),
            "status": self.status,
            "area": str(int(self.area)),
            "box": json.dumps(list(self.box)),
            "transform": json.dumps(self.transform.to_list()),
            "crop": self.crop,
            "mask": self.mask,
        }

    @classmethod
    def from_row(cls, row: dict[str, str]) -> BodyEntry:
        box = tuple(int(v) for v in json.loads(row["box"]))
        if len(box) != 4:
            raise ValueError(f"box needs 4 numbers, got {len(box)}")
        return cls(
            source=row["source"],
            identity=row["identity"],
            split=row["split"],
            person=int(row["person"]),
            box=box,  # type: ignore[arg-type]
            area=int(row["area"]),
            transform=CropTransform.from_list(json.loads(row["transform"])),
            crop=row["crop"],
            mask=row["mask"],
            status=row["status"],
        )


def read_body_manifest(out_dir: str | Path) -> list[BodyEntry]:
    """Every person crop of a body preprocessing folder, sorted by (source, person)."""
    return read_entries(out_dir, BodyEntry)


def read_body_failures(out_dir: str | Path) -> list[dict[str, str]]:
    """The failure log of a body preprocessing folder, sorted by source."""
    return read_failures(out_dir, BodyEntry)


def read_mask(path: str | Path) -> np.ndarray:
    """A 0/255 mask PNG of a body preprocessing folder as (H, W) uint8."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise DeidError(f"{path}: missing or unreadable mask; run the body preprocessing again")
    return mask


# ---------------------------------------------------------------------------- per image
@dataclass(frozen=True)
class RleMask:
    """Picklable mask loader over a COCO-style RLE (sent to workers instead of a COCO index)."""

    rle: dict[str, Any]

    def __call__(self) -> np.ndarray:
        from pycocotools import mask as mask_utils

        with warnings.catch_warnings():  # pycocotools' harmless NumPy 2 `copy=` notice
            warnings.simplefilter("ignore", DeprecationWarning)
            return mask_utils.decode(self.rle).astype(bool)


@dataclass(frozen=True)
class Person:
    index: int  # instance id
    identity: str
    load: Callable[[], np.ndarray]


@dataclass(frozen=True)
class BodyTask:
    path: str
    source: str
    identity: str  # the image's identity (face datasets) or "" (person datasets)
    split: str
    stem: str
    persons: tuple[Person, ...] | None = None  # None: segment the image


@dataclass(frozen=True)
class BodySettings:
    out_dir: str
    segmenter: dict[str, Any]
    size: int = PERSON_CROP_SIZE
    margin: float = PERSON_MARGIN
    min_area: int = 1024
    min_fraction: float = 0.02


class BodyCropper:
    """Segmenter (built on first use) + crop writer for one process."""

    def __init__(self, settings: BodySettings) -> None:
        self.settings = settings
        self.out_dir = Path(settings.out_dir)
        self._segmenter: Any = None

    def segment_all(self, image: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(the largest person component if it covers `min_fraction` of the image, else None;
        the segmenter's whole hard person mask)."""
        if self._segmenter is None:
            from deid.bodies import build_segmenter

            options = dict(self.settings.segmenter)
            self._segmenter = build_segmenter(options.pop("name"), **options)
        binary = self._segmenter.segment(image).binary
        components = person_components(binary)
        if not components:
            return None, binary
        largest = max(components, key=lambda m: int(m.sum()))
        needed = max(self.settings.min_area, self.settings.min_fraction * binary.size)
        return (largest if largest.sum() >= needed else None), binary

    def segment(self, image: np.ndarray) -> np.ndarray | None:
        """The largest person component, if it covers `min_fraction` of the image."""
        return self.segment_all(image)[0]

    # hooks for drivers that write more per person (deid.prep.segmaps: label maps)
    def start_image(self, task: BodyTask, image: np.ndarray, persons: np.ndarray) -> None:
        """Called once per image before its persons are cropped; `persons` is the (H, W) bool
        union of every person found in it (the segmenter's whole mask for segmented images)."""

    def finish_entry(self, entry: BodyEntry, region: RegionCrop, name: str) -> BodyEntry:
        """The manifest entry of one written person crop (`name`: its file name)."""
        return entry

    def __call__(self, task: BodyTask) -> ImageResult:
        try:
            return self._process(task)
        except Exception as err:  # noqa: BLE001 - one bad image must never stop the run
            detail = f"{type(err).__name__}: {err}"
            row = failure_row(
                task.source, task.identity, task.split, "error", detail, FAILURE_REASONS
            )
            return ImageResult(task.source, failures=[row])

    def _process(self, task: BodyTask) -> ImageResult:
        result = ImageResult(task.source)
        path = Path(task.path)

        def failed(reason: str, detail: str, identity: str = task.identity) -> None:
            row = failure_row(task.source, identity, task.split, reason, detail, FAILURE_REASONS)
            result.failures.append(row)

        try:
            image = read_image(path)
        except BadInputError as err:
            reason = "missing" if not path.exists() else "unreadable"
            if path.is_file() and path.stat().st_size == 0:
                reason = "empty"
            failed(reason, err.reason)
            return result
        height, width = image.shape[:2]
        if task.persons is None:
            mask, everyone = self.segment_all(image)
            if mask is None:
                name = self.settings.segmenter["name"]
                failed("no_person", f"{name} on {width}x{height}")
                return result
            people = [(Person(0, task.identity, lambda: mask), mask)]
        else:
            people = [(p, np.asarray(p.load()).astype(bool)) for p in task.persons]
            everyone = np.zeros((height, width), bool)
            for _, mask in people:
                if mask.shape == everyone.shape:
                    everyone |= mask
        self.start_image(task, image, everyone)
        for person, mask in people:
            if mask.shape != (height, width):
                failed(
                    "bad_mask",
                    f"person {person.index}: {mask.shape} vs image {(height, width)}",
                    person.identity,
                )
                continue
            area = int(mask.sum())
            if area < max(1, self.settings.min_area):
                failed("too_small", f"person {person.index}: {area} px", person.identity)
                continue
            region = person_region(image, mask, self.settings.size, self.settings.margin)
            name = f"{task.stem}_{person.index}.png"
            write_png_fast(self.out_dir / "crops" / name, region.crop)
            write_png_fast(self.out_dir / "masks" / name, region.mask)
            entry = BodyEntry(
                task.source,
                person.identity,
                task.split,
                person.index,
                mask_box(mask),
                area,
                region.transform,
                f"crops/{name}",
                f"masks/{name}",
            )
            result.entries.append(self.finish_entry(entry, region, name))
        return result


# ---------------------------------------------------------------------------- the run
def person_identity(dataset: str, image_id: str, instance_id: int) -> str:
    """MOTS: `<sequence>/<track id>` (a pedestrian across the frames of one sequence); other
    person datasets: `<image id>#<instance id>` (one annotated person, one image)."""
    if dataset == "mots":
        return f"{PurePosixPath(image_id).parent.name}/{instance_id}"
    return f"{image_id}#{instance_id}"


def _portable(loader: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    """A COCO loader holds the whole COCO index: send workers its annotation's RLE instead."""
    from deid.datasets.coco_persons import CocoMask

    if isinstance(loader, CocoMask):
        return RleMask(loader.coco.annToRLE(loader.coco.anns[loader.ann_id]))
    return loader


def build_tasks(cfg: DictConfig) -> list[BodyTask]:
    """One task per image of `cfg.data` (all its persons), in dataset order."""
    from deid.datasets.records import FaceRecord

    records = dataset_records(cfg)
    ids = list(dict.fromkeys(r.image_id for r in records))
    stems = crop_stems(ids)
    if not records or isinstance(records[0], FaceRecord):
        return [
            BodyTask(str(r.path), r.image_id, r.identity, r.split, stems[r.image_id])
            for r in records
        ]
    grouped: dict[str, list[Any]] = defaultdict(list)
    for record in records:
        grouped[record.image_id].append(record)
    tasks = []
    for image_id in ids:
        group = sorted(grouped[image_id], key=lambda r: r.instance_id)
        persons = tuple(
            Person(
                r.instance_id,
                person_identity(str(cfg.data.name), image_id, r.instance_id),
                _portable(r.mask_loader),
            )
            for r in group
        )
        first = group[0]
        tasks.append(BodyTask(str(first.path), image_id, "", first.split, stems[image_id], persons))
    return tasks


def body_settings(cfg: DictConfig) -> BodySettings:
    """The workers' settings from a `conf/prep/bodies.yaml`-shaped config."""
    segmenter = {"name": str(cfg.get("segmenter") or "mediapipe")}
    if cfg.get("threshold") is not None:
        segmenter["threshold"] = float(cfg.threshold)
    return BodySettings(
        out_dir=str(cfg.out),
        segmenter=segmenter,
        size=int(cfg.crop.size),
        margin=float(cfg.crop.margin),
        min_area=int(cfg.get("min_area", 1024)),
        min_fraction=float(cfg.get("min_fraction", 0.02)),
    )


def settings_record(cfg: DictConfig, segmented: bool) -> dict[str, Any]:
    """What settings.json records (and a resumed run must match); `segmented`: some images
    are segmented here (face datasets), so the segmenter matters."""
    settings = body_settings(cfg)
    return {
        "version": SETTINGS_VERSION,
        "kind": "bodies",
        "data": dataset_settings(cfg),
        "segmenter": settings.segmenter if segmented else None,  # person datasets: unused
        "crop": {"size": settings.size, "margin": settings.margin},
        "min_area": settings.min_area,
        "min_fraction": settings.min_fraction,
    }


def run_person_crops(
    cfg: DictConfig,
    *,
    entry_type: type,
    make_worker: Callable[[Any], Callable[[BodyTask], ImageResult]],
    worker_settings: Any,
    record: Callable[[DictConfig, bool], dict[str, Any]],
) -> dict[str, Any]:
    """One person-crop run over `cfg.data` into `cfg.out` (this driver's, or one that writes
    more per person: `deid.prep.segmaps`); `record(cfg, segmented)` is settings.json."""
    started = time.perf_counter()
    tasks = build_tasks(cfg)
    if cfg.get("limit") is not None:
        tasks = tasks[: int(cfg.limit)]
    segmented = any(t.persons is None for t in tasks)
    return run_preprocessing(
        cfg,
        entry_type=entry_type,
        tasks=tasks,
        make_worker=make_worker,
        worker_settings=worker_settings,
        settings=record(cfg, segmented),
        noun="persons",
        tasks_per_worker=IMAGES_PER_WORKER,
        started=started,
    )


def preprocess_bodies(cfg: DictConfig) -> dict[str, Any]:
    """Preprocess `cfg.data` into `cfg.out`; returns (and writes to summary.json) the counts
    (`deid.prep.run`, with `persons` as the noun)."""
    return run_person_crops(
        cfg,
        entry_type=BodyEntry,
        make_worker=BodyCropper,
        worker_settings=body_settings(cfg),
        record=settings_record,
    )


@hydra.main(config_path="../../conf", config_name="preprocess_bodies", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_from_hydra(preprocess_bodies, cfg)


if __name__ == "__main__":
    main()
