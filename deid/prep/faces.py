"""Face preprocessing: every face of a dataset -> an eye-centred crop + a manifest row.

    python -m deid.prep.faces data=demo [out=DIR] [workers=N] [limit=N] [save_maps=true]

For each image of the dataset (all its splits; each row keeps the record's split): the
detector (`conf/prep/faces.yaml`: dlib HOG, upsample 1, the CIAGAN paper's) finds **every**
face, dlib's predictor gives each 68 landmarks, and the eye-centred crop (centred between the
inner eye corners 39/42, half-height 5x their distance, 178x218, edge padding;
`deid.faces.regions.face_region`) is written to `DIR/crops/<image id without suffix>_<face>.png`,
faces numbered left to right. The manifest keeps per face (`FaceEntry`): source, identity,
split, box, score, landmarks (source coordinates) and the source -> crop transform, so an
output can be pasted back into the photo. Unreadable/empty files, images without a face and any
per-image exception go to failures.csv with a reason; nothing stops the run.

Landmark images and face masks are rendered on the fly from the manifest by default
(`deid.faces.render.landmark_image / face_mask` of `resize_points(entry.crop_landmarks(), ...)`),
because: they cost no disk and no second pass; they can be drawn at any training resolution
with crisp 1-px lines (resizing a stored 178x218 line drawing to 128 px blurs and breaks its
lines); and an augmentation (flip, shift, scale) transforms the landmark points together with
the image, so image, landmarks and mask stay aligned. `save_maps=true` also writes them at crop
size (`DIR/maps/<...>_<face>_landmarks.png` and `_mask.png`) for inspection or other tools.

Runs on `workers` processes (default: every core this process may use; 1 = in-process), each
loading the detector and predictor once (`deid.prep.pool`). Resumable (`deid.prep.run`): images
already in manifest.csv or failures.csv are skipped (`retry_failures=true` retries the failed
ones), so after a crash or Ctrl-C the same command continues. `DIR` defaults to
`data/preprocessed/<data.name>_<split>`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import cv2
import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from deid.errors import BadInputError, DeidError
from deid.faces import Face, LandmarkPredictor, build_detector
from deid.faces.align import CropTransform
from deid.faces.regions import face_region
from deid.faces.render import face_mask, landmark_image
from deid.media import read_image, write_png_fast
from deid.prep.manifest import (
    ERROR_FAILURE,
    IMAGE_FAILURES,
    ImageResult,
    failure_row,
    json_cell,
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

SETTINGS_VERSION = 1
FAILURE_REASONS = {
    **IMAGE_FAILURES,
    "no_face": "the detector found no face",
    "bad_landmarks": "landmarks unusable for the eye crop (e.g. coinciding eye corners)",
    **ERROR_FAILURE,
}


@dataclass(frozen=True, eq=False)
class FaceEntry:
    """One face crop of the manifest (a row of manifest.csv)."""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "source",
        "identity",
        "split",
        "face",
        "faces_in_image",
        "status",
        "score",
        "box",
        "landmarks",
        "transform",
        "crop",
    )
    INDEX: ClassVar[str] = "face"
    COUNT: ClassVar[str] = "faces_in_image"
    COMMAND: ClassVar[str] = "python -m deid.prep.faces data=<dataset> out={out}"

    source: str  # the image id: the image's path relative to the dataset root
    identity: str
    split: str
    face: int  # index of the face in its image, faces sorted left to right by box x0
    box: tuple[float, float, float, float]  # detector box x0, y0, x1, y1 (edge coordinates)
    score: float  # detector score
    landmarks: np.ndarray  # (68, 2) dlib points in source-image pixel-index coordinates
    transform: CropTransform  # source image -> crop
    crop: str  # the crop PNG, relative to the output folder
    status: str = "ok"

    def __post_init__(self) -> None:
        points = np.asarray(self.landmarks, dtype=np.float64)
        if points.shape != (68, 2):
            raise ValueError(f"{self.source}: expected (68, 2) landmarks, got {points.shape}")
        object.__setattr__(self, "landmarks", points)
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "score", float(self.score))
        object.__setattr__(self, "face", int(self.face))

    @property
    def key(self) -> tuple[str, int]:
        """(source, face): unique within a manifest."""
        return self.source, self.face

    def crop_landmarks(self) -> np.ndarray:
        """(68, 2) landmarks in crop pixel-index coordinates."""
        return self.transform.apply(self.landmarks)

    def crop_path(self, out_dir: str | Path) -> Path:
        """The crop PNG inside the output folder `out_dir`."""
        return Path(out_dir) / self.crop

    def to_row(self, count: int) -> dict[str, str]:
        """The CSV row (all strings); `count` = rows this image has in the manifest."""
        return {
            "source": self.source,
            "identity": self.identity,
            "split": self.split,
            "face": str(self.face),
            "faces_in_image": str(int(count)),
            "status": self.status,
            "score": repr(self.score),
            "box": json_cell(list(self.box)),
            "landmarks": json_cell(self.landmarks.tolist()),
            "transform": json_cell(self.transform.to_list()),
            "crop": self.crop,
        }

    @classmethod
    def from_row(cls, row: dict[str, str]) -> FaceEntry:
        """Parse a CSV row; raises ValueError (or KeyError) for a malformed one."""
        return cls(
            source=row["source"],
            identity=row["identity"],
            split=row["split"],
            face=int(row["face"]),
            box=tuple(json.loads(row["box"])),
            score=float(row["score"]),
            landmarks=np.asarray(json.loads(row["landmarks"]), dtype=np.float64),
            transform=CropTransform.from_list(json.loads(row["transform"])),
            crop=row["crop"],
            status=row["status"],
        )


def read_manifest(out_dir: str | Path) -> list[FaceEntry]:
    """Every face of a face preprocessing folder, sorted by (source, face)."""
    return read_entries(out_dir, FaceEntry)


def read_face_failures(out_dir: str | Path) -> list[dict[str, str]]:
    """The failure log of a face preprocessing folder, sorted by source."""
    return read_failures(out_dir, FaceEntry)


# ---------------------------------------------------------------------------- per image


@dataclass(frozen=True)
class ImageTask:
    """One image to process (plain strings: cheap to send to a worker process)."""

    path: str
    source: str
    identity: str
    split: str
    stem: str  # crop file stem, relative to the output folder's crops/ (source minus suffix)


@dataclass(frozen=True)
class CropSettings:
    """Everything a worker needs to build its models and write its files."""

    out_dir: str
    detector: dict[str, Any]
    size: tuple[int, int] = (178, 218)
    scale: float = 5.0
    save_maps: bool = False
    detect_max_side: int | None = None  # detect on a copy shrunk to this side (memory bound)


def map_paths(out_dir: str | Path, crop: str) -> tuple[Path, Path]:
    """(landmark image, mask) paths that `save_maps=true` writes for a crop path."""
    stem = PurePosixPath(crop).relative_to("crops").with_suffix("")
    base = Path(out_dir) / "maps" / stem
    return base.with_name(f"{base.name}_landmarks.png"), base.with_name(f"{base.name}_mask.png")


def write_maps(out_dir: str | Path, entry: FaceEntry) -> None:
    """Write the crop-sized landmark image and mask of one manifest entry."""
    points = entry.crop_landmarks()
    landmarks_path, mask_path = map_paths(out_dir, entry.crop)
    write_png_fast(landmarks_path, landmark_image(points, entry.transform.size))
    write_png_fast(mask_path, face_mask(points, entry.transform.size))


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

    def _failure(self, task: ImageTask, reason: str, detail: str) -> dict[str, str]:
        return failure_row(task.source, task.identity, task.split, reason, detail, FAILURE_REASONS)

    def _failed(self, task: ImageTask, reason: str, detail: str) -> ImageResult:
        return ImageResult(task.source, failures=[self._failure(task, reason, detail)])

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
                region = face_region(image, landmarks, self.settings.size, self.settings.scale)
            except ValueError as err:
                result.failures.append(self._failure(task, "bad_landmarks", f"face {index}: {err}"))
                continue
            crop_name = f"crops/{task.stem}_{index}.png"
            write_png_fast(self.out_dir / crop_name, region.crop)
            entry = FaceEntry(
                source=task.source,
                identity=task.identity,
                split=task.split,
                face=index,
                box=face.box,
                score=face.score,
                landmarks=landmarks,
                transform=region.transform,
                crop=crop_name,
            )
            if self.settings.save_maps:
                write_maps(self.out_dir, entry)
            result.entries.append(entry)
        return result


# ---------------------------------------------------------------------------- the run


def crop_settings(cfg: DictConfig) -> CropSettings:
    """The workers' settings from a `conf/prep/faces.yaml`-shaped config."""
    size = tuple(int(v) for v in cfg.crop.size)
    return CropSettings(
        out_dir=str(cfg.out),
        detector=dict(OmegaConf.to_container(cfg.detector, resolve=True)),  # type: ignore[arg-type]
        size=(size[0], size[1]),
        scale=float(cfg.crop.scale),
        save_maps=bool(cfg.get("save_maps", False)),
        detect_max_side=None if cfg.get("detect_max_side") is None else int(cfg.detect_max_side),
    )


def settings_record(cfg: DictConfig) -> dict[str, Any]:
    """What settings.json records (and a resumed run must match): dataset, detector, crop."""
    crop = crop_settings(cfg)
    return {
        "version": SETTINGS_VERSION,
        "data": dataset_settings(cfg),
        "detector": crop.detector,
        "detect_max_side": crop.detect_max_side,
        "crop": {"size": list(crop.size), "scale": crop.scale},
    }


def preprocess(cfg: DictConfig) -> dict[str, Any]:
    """Preprocess `cfg.data` into `cfg.out`; returns (and writes to summary.json) the counts
    (`deid.prep.run`, with `faces` as the noun)."""
    from deid.datasets.records import FaceRecord

    started = time.perf_counter()
    records = dataset_records(cfg)
    if records and not isinstance(records[0], FaceRecord):
        raise DeidError(f"data={cfg.data.get('name')} is a person dataset; use deid.prep.bodies")
    if cfg.get("limit") is not None:
        records = records[: int(cfg.limit)]
    crop = crop_settings(cfg)
    stems = crop_stems([r.image_id for r in records])
    tasks = [
        ImageTask(str(r.path), r.image_id, r.identity, r.split, stems[r.image_id]) for r in records
    ]
    out_dir = Path(crop.out_dir)

    def missing_maps() -> None:  # images processed by earlier runs without save_maps
        for entry in read_manifest(out_dir) if crop.save_maps else ():
            if not all(p.is_file() for p in map_paths(out_dir, entry.crop)):
                write_maps(out_dir, entry)

    return run_preprocessing(
        cfg,
        entry_type=FaceEntry,
        tasks=tasks,
        make_worker=FaceCropper,
        worker_settings=crop,
        settings=settings_record(cfg),
        noun="faces",
        before_summary=missing_maps,
        started=started,
    )


@hydra.main(config_path="../../conf", config_name="preprocess", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_from_hydra(preprocess, cfg)


if __name__ == "__main__":
    main()
