"""Full-body CIAGAN preprocessing: every person -> a square crop + its silhouette mask + a row.

    python -m ciagan.bodies data=mots|coco_persons|supervisely|demo|image_folder
        [segmenter=mediapipe] [out=DIR] [workers=N] [limit=N] [crop.size=256] [crop.margin=0.1]

The paper's body variant replaces the face landmarks (and the face mask) with the person's
segmentation mask: "the silhouette of a person suffices as a pose prior". Where the masks come
from depends on the dataset:

- person datasets (`PersonRecord`s: MOTS, COCO persons, Supervisely) bring one mask per person;
  the identity is the MOTS track (`<sequence>/<object id>`: object ids are only unique within
  a sequence) or the instance key (`<image id>#<instance id>`: one person, one image);
- face / identity-folder datasets (`FaceRecord`s, e.g. data=demo) are segmented with a
  `deid.bodies` segmenter (MediaPipe selfie segmentation by default: works offline, made for
  people near the camera, i.e. the upper bodies of portrait photos); one person per image: the
  largest connected component, if it covers `min_fraction` of the image; the identity is the
  dataset's.

Per person: the square crop centred on the mask's box, its side the longer box side grown by
`margin` per side (`deid.faces.align.box_transform`), edge-padded where it leaves the image,
resampled to `crop.size` (area-averaged when shrinking, `ciagan.render.face_crop`); the mask is
cut with the same map. Written to `DIR/crops/<image id without suffix>_<person>.png` and
`DIR/masks/..._<person>.png` (uint8 0/255); `person` is the instance id (person datasets) or 0.
The manifest row keeps the source -> crop transform, so an output pastes back into the frame.
Persons whose mask has fewer than `min_area` pixels, images without a person, unreadable files
and any per-image exception go to failures.csv with a reason; nothing stops the run.

Runs on `workers` processes (every core by default; at most one per 32 images), resumable like `ciagan.preprocess`: images
already in manifest.csv or failures.csv are skipped, so the same command continues after a crash.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ciagan.manifest import (
    FAILURE_COLUMNS,
    FAILURES,
    MANIFEST,
    SUMMARY,
    ManifestWriter,
    _csv_text,
    _read_rows,
    _rewrite,
)
from ciagan.preprocess import _write_png, available_cores, crop_stems
from ciagan.render import face_crop
from deid.errors import BadInputError, DeidError
from deid.faces.align import CropTransform, box_transform
from deid.hydra_entry import run_task
from deid.media import atomic_write, read_image

CROP_SIZE = 256
IMAGES_PER_WORKER = 32  # a worker process takes seconds to start: fewer images, fewer workers
MARGIN = 0.1
SETTINGS_VERSION = 1
BODY_COLUMNS = (
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
BODY_FAILURE_REASONS = {
    "missing": "the file does not exist",
    "empty": "the file has 0 bytes",
    "unreadable": "not an image, truncated or corrupt",
    "no_person": "the segmenter found no person covering min_fraction of the image",
    "too_small": "the person's mask has fewer than min_area pixels",
    "bad_mask": "the person's mask does not have the image's size",
    "error": "any other exception while processing the image (type and message in detail)",
}
COMMAND = "python -m ciagan.bodies data=<dataset> out={out}"


# ---------------------------------------------------------------------------- geometry
def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Edge-coordinate box (x0, y0, x1, y1) of a non-empty (H, W) mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("empty person mask")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def person_transform(
    mask: np.ndarray, size: int = CROP_SIZE, margin: float = MARGIN
) -> CropTransform:
    """The square crop around the mask's box, grown by `margin` of its longer side per side."""
    return box_transform(mask_box(mask), size, margin=margin, square=True)


def crop_person(
    image: np.ndarray, mask: np.ndarray, transform: CropTransform
) -> tuple[np.ndarray, np.ndarray]:
    """(crop RGB uint8, crop mask uint8 0/255) cut with `transform` (edge-padded outside)."""
    crop = face_crop(image, transform)
    soft = face_crop(np.where(mask, 255, 0).astype(np.uint8), transform)
    return crop, np.where(soft >= 128, 255, 0).astype(np.uint8)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A 0/255 mask resized to `size` x `size` (area-averaged, then cut at one half)."""
    small = cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA)
    return np.where(small >= 128, 255, 0).astype(np.uint8)


def silhouette_image(mask: np.ndarray) -> np.ndarray:
    """The generator's body condition: the filled silhouette, white on black, 3 channels
    (the same channel layout as the face landmark image)."""
    return np.repeat(np.where(np.asarray(mask) > 127, 255, 0).astype(np.uint8)[..., None], 3, 2)


def person_components(mask: np.ndarray, min_area: int = 1) -> list[np.ndarray]:
    """Connected components (8-connectivity) of a hard person mask with at least `min_area`
    pixels, as bool masks ordered left to right (box x0, then y0)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        np.asarray(mask).astype(np.uint8), connectivity=8
    )
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= max(1, min_area)]
    keep.sort(key=lambda i: (stats[i, cv2.CC_STAT_LEFT], stats[i, cv2.CC_STAT_TOP], i))
    return [labels == i for i in keep]


# ---------------------------------------------------------------------------- manifest
@dataclass(frozen=True, eq=False)
class BodyEntry:
    """One person crop of the body manifest (a row of manifest.csv)."""

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

    def to_row(self, persons_in_image: int) -> dict[str, str]:
        return {
            "source": self.source,
            "identity": self.identity,
            "split": self.split,
            "person": str(self.person),
            "persons_in_image": str(int(persons_in_image)),
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


def failure(source: str, identity: str, split: str, reason: str, detail: str) -> dict[str, str]:
    if reason not in BODY_FAILURE_REASONS:
        raise ValueError(f"unknown failure reason {reason!r}")
    values = (source, identity, split, reason, " ".join(detail.split()))
    return dict(zip(FAILURE_COLUMNS, values, strict=True))


def _complete(path: Path) -> tuple[list[dict[str, str]], int, bool]:
    """Rows of images with all their rows present, sorted by (source, person); rows dropped;
    whether the last line was torn."""
    parsed = _read_rows(path, BODY_COLUMNS)
    groups: dict[str, dict[int, dict[str, str]]] = defaultdict(dict)
    expected: dict[str, int] = {}
    dropped = parsed.dropped
    for row in parsed.rows:
        try:
            person, count = int(row["person"]), int(row["persons_in_image"])
        except ValueError:
            dropped += 1
            continue
        group = groups[row["source"]]
        if person in group or expected.setdefault(row["source"], count) != count:
            dropped += 1
            continue
        group[person] = row
    rows = []
    for source in sorted(groups):
        if len(groups[source]) != expected[source]:
            dropped += len(groups[source])
            continue
        rows.extend(groups[source][p] for p in sorted(groups[source]))
    return rows, dropped, parsed.torn


class BodyManifestWriter(ManifestWriter):
    """`ciagan.manifest.ManifestWriter` (lock, settings check, failure log, resume) with the
    body manifest's columns; `faces` counts person rows."""

    def _open_manifest(self) -> None:
        path = self.manifest_path
        if not path.is_file() or path.stat().st_size == 0:
            _rewrite(path, [], BODY_COLUMNS)
            return
        rows, dropped, torn = _complete(path)
        if dropped or torn:
            _rewrite(path, rows, BODY_COLUMNS)
            self.repaired += dropped
        self._faces.update(r["source"] for r in rows)
        self._face_rows = len(rows)

    def add(self, entries: Sequence[Any], failures: Sequence[dict[str, str]] = ()) -> None:
        """Append one image's person rows (`BodyEntry`s) and failure rows, and flush both."""
        if entries:
            rows = [e.to_row(len(entries)) for e in entries]
            self._files[0].write(_csv_text(rows, BODY_COLUMNS, header=False))
            self._files[0].flush()
            self._faces[entries[0].source] += len(entries)
            self._face_rows += len(entries)
        super().add([], failures)

    def finalize(self) -> None:
        self.close_files()
        _rewrite(self.manifest_path, _complete(self.manifest_path)[0], BODY_COLUMNS)
        failures = sorted(
            _read_rows(self.failures_path, FAILURE_COLUMNS).rows,
            key=lambda r: (r["source"], r["reason"], r["detail"]),
        )
        _rewrite(self.failures_path, failures, FAILURE_COLUMNS)
        self._failures = {}
        for row in failures:
            self._failures.setdefault(row["source"], []).append(row["reason"])


def _require(out_dir: Path, name: str) -> Path:
    path = out_dir / name
    if not path.is_file():
        raise DeidError(f"{path}: not found; create it with `{COMMAND.format(out=out_dir)}`")
    return path


def read_body_manifest(out_dir: str | Path) -> list[BodyEntry]:
    """Every person crop of a body preprocessing folder, sorted by (source, person)."""
    path = _require(Path(out_dir), MANIFEST)
    entries = []
    for row in _complete(path)[0]:
        try:
            entries.append(BodyEntry.from_row(row))
        except (ValueError, TypeError) as err:
            raise DeidError(
                f"{path}: the row of {row['source']} person {row['person']} is malformed ({err})"
            ) from None
    return entries


def read_body_failures(out_dir: str | Path) -> list[dict[str, str]]:
    rows = _read_rows(_require(Path(out_dir), FAILURES), FAILURE_COLUMNS).rows
    return sorted(rows, key=lambda r: (r["source"], r["reason"], r["detail"]))


# ---------------------------------------------------------------------------- per image
@dataclass(frozen=True)
class RleMask:
    """Picklable mask loader over a COCO-style RLE (sent to workers instead of a COCO index)."""

    rle: dict[str, Any]

    def __call__(self) -> np.ndarray:
        from pycocotools import mask as mask_utils

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


@dataclass
class BodyResult:
    source: str
    entries: list[BodyEntry] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class BodySettings:
    out_dir: str
    segmenter: dict[str, Any]
    size: int = CROP_SIZE
    margin: float = MARGIN
    min_area: int = 1024
    min_fraction: float = 0.02


class BodyCropper:
    """Segmenter (built on first use) + crop writer for one process."""

    def __init__(self, settings: BodySettings) -> None:
        self.settings = settings
        self.out_dir = Path(settings.out_dir)
        self._segmenter: Any = None

    def segment(self, image: np.ndarray) -> np.ndarray | None:
        """The largest person component, if it covers `min_fraction` of the image."""
        if self._segmenter is None:
            from deid.bodies import build_segmenter

            options = dict(self.settings.segmenter)
            self._segmenter = build_segmenter(options.pop("name"), **options)
        binary = self._segmenter.segment(image).binary
        components = person_components(binary)
        if not components:
            return None
        largest = max(components, key=lambda m: int(m.sum()))
        needed = max(self.settings.min_area, self.settings.min_fraction * binary.size)
        return largest if largest.sum() >= needed else None

    def __call__(self, task: BodyTask) -> BodyResult:
        try:
            return self._process(task)
        except Exception as err:  # noqa: BLE001 - one bad image must never stop the run
            row = failure(
                task.source, task.identity, task.split, "error", f"{type(err).__name__}: {err}"
            )
            return BodyResult(task.source, failures=[row])

    def _process(self, task: BodyTask) -> BodyResult:
        result = BodyResult(task.source)
        path = Path(task.path)

        def failed(reason: str, detail: str, identity: str = task.identity) -> None:
            result.failures.append(failure(task.source, identity, task.split, reason, detail))

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
            mask = self.segment(image)
            if mask is None:
                name = self.settings.segmenter["name"]
                failed("no_person", f"{name} on {width}x{height}")
                return result
            people = [(Person(0, task.identity, lambda: mask), mask)]
        else:
            people = [(p, np.asarray(p.load()).astype(bool)) for p in task.persons]
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
            transform = person_transform(mask, self.settings.size, self.settings.margin)
            crop, crop_mask = crop_person(image, mask, transform)
            name = f"{task.stem}_{person.index}.png"
            _write_png(self.out_dir / "crops" / name, crop)
            _write_png(self.out_dir / "masks" / name, crop_mask)
            result.entries.append(
                BodyEntry(
                    task.source,
                    person.identity,
                    task.split,
                    person.index,
                    mask_box(mask),
                    area,
                    transform,
                    f"crops/{name}",
                    f"masks/{name}",
                )
            )
        return result


_worker: BodyCropper | None = None  # exists only inside worker processes


def _init_worker(settings: BodySettings) -> None:
    global _worker
    cv2.setNumThreads(1)
    _worker = BodyCropper(settings)


def _work(task: BodyTask) -> BodyResult:
    assert _worker is not None, "worker not initialised"
    return _worker(task)


def run_tasks(
    tasks: Sequence[BodyTask], settings: BodySettings, workers: int, start_method: str = "spawn"
) -> Iterator[BodyResult]:
    """Results of `tasks` in completion order, on `workers` processes (1 = this process)."""
    workers = max(1, min(workers, -(-len(tasks) // IMAGES_PER_WORKER)))
    if workers == 1:
        cropper = BodyCropper(settings)
        yield from (cropper(task) for task in tasks)
        return
    context = multiprocessing.get_context(start_method)
    chunksize = max(1, min(16, len(tasks) // (workers * 8)))
    with context.Pool(workers, initializer=_init_worker, initargs=(settings,)) as pool:
        yield from pool.imap_unordered(_work, tasks, chunksize=chunksize)


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
    from deid.datasets.registry import build_dataset

    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(data, dict)
    records = build_dataset(data)
    ids = list(dict.fromkeys(r.image_id for r in records))
    bad = [i for i in ids if PurePosixPath(i).is_absolute() or ".." in PurePosixPath(i).parts]
    if bad:
        raise DeidError(f"image id {bad[0]!r} is not a relative path inside the dataset")
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
                person_identity(str(data["name"]), image_id, r.instance_id),
                _portable(r.mask_loader),
            )
            for r in group
        )
        first = group[0]
        tasks.append(BodyTask(str(first.path), image_id, "", first.split, stems[image_id], persons))
    return tasks


def _settings_record(cfg: DictConfig, settings: BodySettings, segmented: bool) -> dict[str, Any]:
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(data, dict)
    data.pop("eval_subset", None)
    data["root"] = str(Path(str(data["root"])).resolve())
    return {
        "version": SETTINGS_VERSION,
        "kind": "bodies",
        "data": data,
        "segmenter": settings.segmenter if segmented else None,  # person datasets: unused
        "crop": {"size": settings.size, "margin": settings.margin},
        "min_area": settings.min_area,
        "min_fraction": settings.min_fraction,
    }


def preprocess_bodies(cfg: DictConfig) -> dict[str, Any]:
    """Preprocess `cfg.data` into `cfg.out`; returns (and writes to summary.json) the counts:
    `images`, `done`, `skipped_already_done`, `persons`, `new_persons`,
    `images_with_persons`, `failures` (rows by reason), `workers`, `seconds`, `out`, `manifest`."""
    started = time.perf_counter()
    out_dir = Path(str(cfg.out))
    segmenter = {"name": str(cfg.get("segmenter") or "mediapipe")}
    if cfg.get("threshold") is not None:
        segmenter["threshold"] = float(cfg.threshold)
    settings = BodySettings(
        out_dir=str(out_dir),
        segmenter=segmenter,
        size=int(cfg.crop.size),
        margin=float(cfg.crop.margin),
        min_area=int(cfg.get("min_area", 1024)),
        min_fraction=float(cfg.get("min_fraction", 0.02)),
    )
    tasks = build_tasks(cfg)
    if cfg.get("limit") is not None:
        tasks = tasks[: int(cfg.limit)]
    workers = available_cores() if cfg.get("workers") is None else int(cfg.workers)
    if workers < 1:
        raise DeidError(f"workers={workers} must be at least 1 (or null for every core)")
    retry = [t.source for t in tasks] if cfg.get("retry_failures") else []
    segmented = any(t.persons is None for t in tasks)
    record = _settings_record(cfg, settings, segmented)
    with BodyManifestWriter(out_dir, record, retry=retry) as writer:
        done = writer.done
        todo = [t for t in tasks if t.source not in done]
        before = writer.faces
        interval = 0.1 if sys.stderr.isatty() else 30.0
        with tqdm(total=len(todo), desc="bodies", unit="image", mininterval=interval) as bar:
            for result in (
                run_tasks(todo, settings, workers, str(cfg.get("start_method") or "spawn"))
                if todo
                else ()
            ):
                writer.add(result.entries, result.failures)
                bar.set_postfix(persons=writer.faces - before, refresh=False)
                bar.update(1)
        writer.finalize()
        summary = {
            "out": str(out_dir),
            "manifest": str(out_dir / MANIFEST),
            "images": len(tasks),
            "done": len(todo),
            "skipped_already_done": len(tasks) - len(todo),
            "persons": writer.faces,
            "new_persons": writer.faces - before,
            "images_with_persons": writer.images_with_faces,
            "failures": writer.failure_counts(),
            "workers": max(1, min(workers, -(-len(todo) // IMAGES_PER_WORKER))) if todo else 0,
            "seconds": round(time.perf_counter() - started, 3),
        }
        with atomic_write(out_dir / SUMMARY) as handle:
            json.dump(summary, handle, indent=2)
    failed = ", ".join(f"{n} {k}" for k, n in summary["failures"].items()) or "none"
    print(
        f"{summary['images']} images: {summary['done']} processed, "
        f"{summary['skipped_already_done']} already done; {summary['persons']} persons from "
        f"{summary['images_with_persons']} images; failures: {failed}\n"
        f"manifest: {summary['manifest']} (failures.csv and summary.json beside it)"
    )
    return summary


@hydra.main(config_path="../conf", config_name="preprocess_bodies", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run_task(preprocess_bodies, cfg)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to continue", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
