"""Segmentation-map preprocessing: every person -> square crop + label map + mask + manifest row.

    python -m deid.prep.segmaps data=coco_persons|supervisely|mots|demo|image_folder
        [labels=person|cocostuff] [out=DIR] [workers=N] [limit=N] [crop.size=256]

For segmentation-conditioned image synthesis (the VQGAN method: a condition stage encodes the
label map of a person crop, the transformer paints the image). The persons and crops are the
body preprocessing's (`deid.prep.bodies`: same tasks, same `person_region` geometry, same
failure reasons); each person additionally gets the crop's label map, cut from the image's
label map with the crop's map and nearest-neighbour sampling (label ids are never blended):

- `labels=person` (any dataset): 1 = person (every person of the image: all annotated
  instances, or everything the segmenter marked for segmented photo folders), 0 = background;
- `labels=cocostuff` (data=coco_persons): the COCO-Stuff map of the image
  (`deid.datasets.coco_stuff`: 0 = unlabeled, 1 = person, ..., 182), read from
  `stuff_root/stuffthingmaps_trainval2017/{split}2017/`.

Both use one indexing (0 = background/unlabeled, 1 = person), so a 2-label map is the first
two labels of the 183-label one. Files: `DIR/crops/<stem>_<person>.png`,
`DIR/masks/<stem>_<person>.png` (this person, 0/255), `DIR/labels/<stem>_<person>.png` (uint8
label ids). Resumable and parallel like every `deid.prep` driver (`deid.prep.run`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import hydra
import numpy as np
from omegaconf import DictConfig

from deid.datasets.coco_stuff import (
    NUM_LABELS,
    check_stuff_root,
    person_labels,
    read_stuff_map,
    stuff_map_path,
)
from deid.errors import DeidError, unknown_name
from deid.faces.align import RegionCrop, crop
from deid.media import write_png_fast
from deid.prep.bodies import (
    BodyCropper,
    BodyEntry,
    BodySettings,
    BodyTask,
    body_settings,
    run_person_crops,
)
from deid.prep.manifest import read_entries
from deid.prep.run import run_from_hydra

SETTINGS_VERSION = 1
LABEL_KINDS = {"person": 2, "cocostuff": NUM_LABELS}  # kind -> number of labels


@dataclass(frozen=True, eq=False)
class SegmapEntry(BodyEntry):
    """One person crop with its label map (a row of manifest.csv)."""

    COLUMNS: ClassVar[tuple[str, ...]] = (*BodyEntry.COLUMNS, "labels")
    COMMAND: ClassVar[str] = "python -m deid.prep.segmaps data=<dataset> out={out}"

    labels: str = ""  # label map PNG (uint8 label ids), relative to the output folder

    def to_row(self, count: int) -> dict[str, str]:
        return {**super().to_row(count), "labels": self.labels}

    @classmethod
    def from_row(cls, row: dict[str, str]) -> SegmapEntry:
        body = BodyEntry.from_row(row)
        values = {f.name: getattr(body, f.name) for f in fields(BodyEntry)}
        return cls(**values, labels=row["labels"])


def read_segmap_manifest(out_dir: Any) -> list[SegmapEntry]:
    """Every person crop of a segmentation-map preprocessing folder, sorted by (source, person)."""
    return read_entries(out_dir, SegmapEntry)


@dataclass(frozen=True)
class SegmapSettings(BodySettings):
    labels: str = "person"
    stuff_root: str | None = None


class SegmapCropper(BodyCropper):
    """The body cropper, writing each person's label-map crop too."""

    settings: SegmapSettings

    def __init__(self, settings: SegmapSettings) -> None:
        super().__init__(settings)
        self._labels: np.ndarray | None = None

    def start_image(self, task: BodyTask, image: np.ndarray, persons: np.ndarray) -> None:
        if self.settings.labels == "cocostuff":
            assert self.settings.stuff_root is not None
            path = stuff_map_path(self.settings.stuff_root, task.source)
            self._labels = read_stuff_map(path, image.shape[:2])
        else:
            self._labels = person_labels(persons)

    def finish_entry(self, entry: BodyEntry, region: RegionCrop, name: str) -> SegmapEntry:
        assert self._labels is not None
        labels = crop(self._labels, region.transform, interpolation="nearest")
        write_png_fast(self.out_dir / "labels" / name, labels)
        values = {f.name: getattr(entry, f.name) for f in fields(BodyEntry)}
        return SegmapEntry(**values, labels=f"labels/{name}")


def segmap_settings(cfg: DictConfig) -> SegmapSettings:
    """The workers' settings from a `conf/prep/segmaps.yaml`-shaped config."""
    kind = str(cfg.get("labels") or "person")
    if kind not in LABEL_KINDS:
        raise unknown_name("labels", kind, LABEL_KINDS)
    stuff_root = None
    if kind == "cocostuff":
        if str(cfg.data.name) != "coco_persons":
            raise DeidError(
                f"labels=cocostuff needs data=coco_persons (COCO-Stuff maps exist for COCO "
                f"images only), not data={cfg.data.name}; use labels=person"
            )
        stuff_root = str(cfg.get("stuff_root") or cfg.data.root)
        check_stuff_root(stuff_root, str(cfg.data.split))
    return SegmapSettings(**asdict(body_settings(cfg)), labels=kind, stuff_root=stuff_root)


def settings_record(cfg: DictConfig, segmented: bool) -> dict[str, Any]:
    """settings.json: the body settings plus the label source (a resumed run must match)."""
    from deid.prep.bodies import settings_record as body_record

    settings = segmap_settings(cfg)
    record = body_record(cfg, segmented)
    record.update(
        version=SETTINGS_VERSION,
        kind="segmaps",
        labels={"kind": settings.labels, "num_labels": LABEL_KINDS[settings.labels]},
    )
    return record


def preprocess_segmaps(cfg: DictConfig) -> dict[str, Any]:
    """Preprocess `cfg.data` into `cfg.out`; returns (and writes to summary.json) the counts."""
    return run_person_crops(
        cfg,
        entry_type=SegmapEntry,
        make_worker=SegmapCropper,
        worker_settings=segmap_settings(cfg),
        record=settings_record,
    )


@hydra.main(config_path="../../conf", config_name="preprocess_segmaps", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_from_hydra(preprocess_segmaps, cfg)


if __name__ == "__main__":
    main()
