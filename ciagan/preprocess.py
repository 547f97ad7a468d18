"""CIAGAN preprocessing: every face of a dataset -> an eye-centred crop + a manifest row.

    python -m ciagan.preprocess data=demo [out=DIR] [workers=N] [limit=N] [save_maps=true]

For each image of the dataset (all its splits; each row keeps the record's split): dlib HOG
(upsample 1, `conf/detector/dlib_hog.yaml`) finds **every** face, dlib's predictor gives each 68
landmarks, and the CIAGAN crop (centred between the inner eye corners 39/42, half-height 5x
their distance, 178x218, edge padding; `deid.faces.align.eye_transform`) is written to
`DIR/crops/<image id without suffix>_<face>.png`, faces numbered left to right. The manifest
(`ciagan.manifest`) keeps per face: source, identity, split, box, score, landmarks (source
coordinates) and the source -> crop transform, so an output can be pasted back into the photo.
Unreadable/empty files, images without a face and any per-image exception go to failures.csv
with a reason; nothing stops the run.

Landmark images and face masks are rendered on the fly from the manifest by default
(`ciagan.render.landmark_image / face_mask` of `resize_points(entry.crop_landmarks(), ...)`),
because: they cost no disk and no second pass; they can be drawn at any training resolution
with crisp 1-px lines (resizing a stored 178x218 line drawing to 128 px blurs and breaks its
lines); and an augmentation (flip, shift, scale) transforms the landmark points together with
the image, so image, landmarks and mask stay aligned. `save_maps=true` also writes them at crop
size (`DIR/maps/<...>_<face>_landmarks.png` and `_mask.png`) for inspection or other tools.

Runs on `workers` processes (default: every core this process may use; 1 = in-process), each
loading the detector and predictor once. Resumable: images already in manifest.csv or
failures.csv are skipped (`retry_failures=true` retries the failed ones), so after a crash or
Ctrl-C the same command continues. `DIR` defaults to `data/preprocessed/<data.name>_<split>`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import cv2
import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ciagan.manifest import (
    MANIFEST,
    SUMMARY,
    FaceEntry,
    ManifestWriter,
    failure_row,
    read_manifest,
)
from ciagan.render import face_crop, face_mask, landmark_image
from deid.errors import BadInputError, DeidError
from deid.faces import Face, LandmarkPredictor, build_detector, eye_transform
from deid.hydra_entry import run_task
from deid.media import atomic_write, read_image

if TYPE_CHECKING:
    from deid.datasets.records import FaceRecord

SETTINGS_VERSION = 1


@dataclass(frozen=True)
class ImageTask:
    """One image to process (plain strings: cheap to send to a worker process)."""

    path: str
    source: str
    identity: str
    split: str
    stem: str  # crop file stem, relative to the output folder's crops/ (source minus suffix)


@dataclass
class ImageResult:
    """What processing one image gave: its face entries and/or failure rows."""

    source: str
    entries: list[FaceEntry] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class CropSettings:
    """Everything a worker needs to build its models and write its files."""

    out_dir: str
    detector: dict[str, Any]
    size: tuple[int, int] = (178, 218)
    scale: float = 5.0
    save_maps: bool = False
    detect_max_side: int | None = None  # detect on a copy shrunk to this side (memory bound)


def _write_png(path: Path, image: np.ndarray) -> None:
    """Write an RGB or grayscale uint8 PNG atomically (OpenCV's encoder, fast level 1)."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_write(path, "wb") as handle:
        handle.write(data.tobytes())


def map_paths(out_dir: str | Path, crop: str) -> tuple[Path, Path]:
    """(landmark image, mask) paths that `save_maps=true` writes for a crop path."""
    stem = PurePosixPath(crop).relative_to("crops").with_suffix("")
    base = Path(out_dir) / "maps" / stem
    return base.with_name(f"{base.name}_landmarks.png"), base.with_name(f"{base.name}_mask.png")


def write_maps(out_dir: str | Path, entry: FaceEntry) -> None:
    """Write the crop-sized landmark image and mask of one manifest entry."""
    points = entry.crop_landmarks()
    landmarks_path, mask_path = map_paths(out_dir, entry.crop)
    _write_png(landmarks_path, landmark_image(points, entry.transform.size))
    _write_png(mask_path, face_mask(points, entry.transform.size))


class FaceCropper:
    """Detector + landmark predictor + crop writer for one process."""

    def __init__(self, settings: CropSettings) -> None:
        self.settings = settings
        self.out_dir = Path(settings.out_dir)
        options = dict(settings.detector)
        self.detector = build_detector(options.pop("name"), **options)
        self.predictor = LandmarkPredictor()

    def __call__(self, task: ImageTask) -> ImageResult:
        """Process one image; never raises (a failure becomes a failures.csv row)."""
        try:
            return self._process(task)
        except Exception as err:  # noqa: BLE001 - one bad image must never stop the run
            return self._failed(task, "error", f"{type(err).__name__}: {err}")

    def _failed(self, task: ImageTask, reason: str, detail: str) -> ImageResult:
        row = failure_row(task.source, task.identity, task.split, reason, detail)
        return ImageResult(task.source, failures=[row])

    def _detect(self, image: np.ndarray) -> list[Face]:
        """Faces in `image`; a photo larger than `detect_max_side` is searched in a shrunk copy
        (HOG with upsampling needs ~0.5 GB per 10 megapixels) and the boxes scaled back."""
        limit = self.settings.detect_max_side
        height, width = image.shape[:2]
        if not limit or max(height, width) <= limit:
            return self.detector.detect(image)
        factor = limit / max(height, width)
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        sx, sy = width / size[0], height / size[1]
        return [
            Face((f.box[0] * sx, f.box[1] * sy, f.box[2] * sx, f.box[3] * sy), f.score)
            for f in self.detector.detect(small)
        ]

    def _process(self, task: ImageTask) -> ImageResult:
        path = Path(task.path)
        try:
            image = read_image(path)
        except BadInputError as err:
            if not path.exists():
                return self._failed(task, "missing", err.reason)
            if path.is_file() and path.stat().st_size == 0:
                return self._failed(task, "empty", err.reason)
            return self._failed(task, "unreadable", err.reason)
        faces = sorted(self._detect(image), key=lambda f: (f.box[0], f.box[1]))
        if not faces:
            height, width = image.shape[:2]
            return self._failed(task, "no_face", f"{self.detector.name} on {width}x{height}")
        result = ImageResult(task.source)
        for index, face in enumerate(faces):
            landmarks = self.predictor.predict(image, face.box)
            try:
                transform = eye_transform(landmarks, self.settings.size, self.settings.scale)
            except ValueError as err:
                row = failure_row(
                    task.source, task.identity, task.split, "bad_landmarks", f"face {index}: {err}"
                )
                result.failures.append(row)
                continue
            crop_name = f"crops/{task.stem}_{index}.png"
            _write_png(self.out_dir / crop_name, face_crop(image, transform))
            entry = FaceEntry(
                source=task.source,
                identity=task.identity,
                split=task.split,
                face=index,
                box=face.box,
                score=face.score,
                landmarks=landmarks,
                transform=transform,
                crop=crop_name,
            )
            if self.settings.save_maps:
                write_maps(self.out_dir, entry)
            result.entries.append(entry)
        return result


# ---------------------------------------------------------------------------- worker processes
# Each pool process builds its own models once (dlib objects cannot be pickled); this module
# global exists only inside worker processes.
_worker_cropper: FaceCropper | None = None


def _init_worker(settings: CropSettings) -> None:
    global _worker_cropper
    cv2.setNumThreads(1)  # the pool is the parallelism; avoid oversubscribing the cores
    _worker_cropper = FaceCropper(settings)


def _work(task: ImageTask) -> ImageResult:
    assert _worker_cropper is not None, "worker not initialised"
    return _worker_cropper(task)


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity, e.g. SLURM or taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def run_tasks(
    tasks: Sequence[ImageTask], settings: CropSettings, workers: int, start_method: str = "spawn"
) -> Iterator[ImageResult]:
    """Results of `tasks` in completion order, on `workers` processes (1 = this process)."""
    if not tasks:
        return
    workers = max(1, min(workers, len(tasks)))
    if workers == 1:
        cropper = FaceCropper(settings)
        for task in tasks:
            yield cropper(task)
        return
    chunksize = max(1, min(16, len(tasks) // (workers * 8)))
    context = multiprocessing.get_context(start_method)
    with context.Pool(workers, initializer=_init_worker, initargs=(settings,)) as pool:
        yield from pool.imap_unordered(_work, tasks, chunksize=chunksize)


# ---------------------------------------------------------------------------- the run


def crop_stems(sources: Sequence[str]) -> dict[str, str]:
    """source -> crop stem: the id without its suffix, or with `.ext` -> `_ext` where two ids
    differ only in their suffix (`a.jpg`, `a.png`)."""
    plain = {s: str(PurePosixPath(s).with_suffix("")) for s in sources}
    counts = Counter(plain.values())
    return {
        s: stem if counts[stem] == 1 else stem + PurePosixPath(s).suffix.replace(".", "_")
        for s, stem in plain.items()
    }


def _face_records(cfg: DictConfig) -> list[FaceRecord]:
    # imported here, not at the top: the dataset readers pull in torch (~4 s), which worker
    # processes (they re-import this module under spawn) do not need
    from deid.datasets.records import FaceRecord
    from deid.datasets.registry import build_dataset

    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(data, dict)
    records = build_dataset(data)
    if records and not isinstance(records[0], FaceRecord):
        raise DeidError(f"data={data.get('name')} is a person dataset; CIAGAN needs faces")
    unsafe = [
        r.image_id
        for r in records
        if PurePosixPath(r.image_id).is_absolute() or ".." in PurePosixPath(r.image_id).parts
    ]
    if unsafe:
        raise DeidError(f"image id {unsafe[0]!r} is not a relative path inside the dataset")
    return records  # type: ignore[return-value]


def _settings_record(cfg: DictConfig, crop: CropSettings) -> dict[str, Any]:
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(data, dict)
    data.pop("eval_subset", None)
    data["root"] = str(Path(str(data["root"])).resolve())
    return {
        "version": SETTINGS_VERSION,
        "data": data,
        "detector": crop.detector,
        "detect_max_side": crop.detect_max_side,
        "crop": {"size": list(crop.size), "scale": crop.scale},
    }


def _workers(value: Any) -> int:
    if value is None:
        return available_cores()
    workers = int(value)
    if workers < 1:
        raise DeidError(f"workers={value} must be at least 1 (or null for every core)")
    return workers


def preprocess(cfg: DictConfig) -> dict[str, Any]:
    """Preprocess `cfg.data` into `cfg.out`; returns (and writes to summary.json) the counts.

    Summary keys: `images` (dataset images considered, after `limit`), `done` (processed by
    this run), `skipped_already_done`, `faces` (rows in the manifest), `new_faces` (added by
    this run), `images_with_faces`, `failures` (failure rows by reason), `workers`,
    `seconds` (the whole run), `processing_seconds` (starting the workers and their models,
    and processing the images), `images_per_second` (= done / processing_seconds), `out`,
    `manifest`.
    """
    started = time.perf_counter()
    out_dir = Path(str(cfg.out))
    records = _face_records(cfg)
    if cfg.get("limit") is not None:
        records = records[: int(cfg.limit)]
    size = tuple(int(v) for v in cfg.crop.size)
    crop = CropSettings(
        out_dir=str(out_dir),
        detector=dict(OmegaConf.to_container(cfg.detector, resolve=True)),  # type: ignore[arg-type]
        size=(size[0], size[1]),
        scale=float(cfg.crop.scale),
        save_maps=bool(cfg.save_maps),
        detect_max_side=None if cfg.get("detect_max_side") is None else int(cfg.detect_max_side),
    )
    stems = crop_stems([r.image_id for r in records])
    retry = [r.image_id for r in records] if cfg.get("retry_failures") else []
    workers = _workers(cfg.get("workers"))
    with ManifestWriter(out_dir, _settings_record(cfg, crop), retry=retry) as writer:
        if writer.repaired:
            print(f"repaired {out_dir / MANIFEST}: dropped {writer.repaired} unfinished rows")
        done = writer.done
        todo = [
            ImageTask(str(r.path), r.image_id, r.identity, r.split, stems[r.image_id])
            for r in records
            if r.image_id not in done
        ]
        skipped = len(records) - len(todo)
        faces_before = writer.faces
        failed = 0
        start_method = str(cfg.get("start_method") or "spawn")
        interval = 0.1 if sys.stderr.isatty() else 30.0  # few lines in batch-job logs
        bar = tqdm(total=len(todo), desc="preprocess", unit="image", mininterval=interval)
        processing_started = time.perf_counter()
        with bar:
            try:
                for result in run_tasks(todo, crop, workers, start_method):
                    writer.add(result.entries, result.failures)
                    failed += bool(result.failures)
                    bar.set_postfix(faces=writer.faces - faces_before, failed=failed, refresh=False)
                    bar.update(1)
            except KeyboardInterrupt:
                bar.close()
                print(
                    f"interrupted after {bar.n} of {len(todo)} images (saved in {out_dir}); "
                    "run the same command again to continue",
                    file=sys.stderr,
                )
                raise
        processing = time.perf_counter() - processing_started
        writer.finalize()
        if crop.save_maps:  # images processed by earlier runs without save_maps
            for entry in read_manifest(out_dir):
                if not all(p.is_file() for p in map_paths(out_dir, entry.crop)):
                    write_maps(out_dir, entry)
        seconds = time.perf_counter() - started
        summary = {
            "out": str(out_dir),
            "manifest": str(out_dir / MANIFEST),
            "images": len(records),
            "done": len(todo),
            "skipped_already_done": skipped,
            "faces": writer.faces,
            "new_faces": writer.faces - faces_before,
            "images_with_faces": writer.images_with_faces,
            "failures": writer.failure_counts(),
            "workers": max(1, min(workers, len(todo))) if todo else 0,
            "seconds": round(seconds, 3),
            "processing_seconds": round(processing, 3),
            "images_per_second": round(len(todo) / processing, 2) if todo else None,
        }
        with atomic_write(out_dir / SUMMARY) as handle:
            json.dump(summary, handle, indent=2)
    _print_summary(summary)
    return summary


def _print_summary(summary: dict[str, Any]) -> None:
    failures = summary["failures"]
    failed = ", ".join(f"{n} {reason}" for reason, n in failures.items()) or "none"
    rate = summary["images_per_second"]
    speed = f" in {summary['processing_seconds']:.1f} s ({rate} images/s)" if rate else ""
    print(
        f"{summary['images']} images: {summary['done']} processed{speed}, "
        f"{summary['skipped_already_done']} already done; "
        f"{summary['faces']} faces from {summary['images_with_faces']} images; "
        f"failures: {failed}\n"
        f"manifest: {summary['manifest']} (failures.csv and summary.json beside it)"
    )


@hydra.main(config_path="../conf", config_name="preprocess", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run_task(preprocess, cfg)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
