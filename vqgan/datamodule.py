"""LightningDataModule over a segmentation-map manifest (`python -m deid.prep.segmaps`).

One datamodule serves the three VQGAN stages (image autoencoder, segmentation autoencoder,
transformer): every batch holds `image`, `labels` and `mask` (`vqgan.data.SegmapCrops`); each
stage reads what it needs. Resumable (`deid.training.ResumableDataModule`): `last.ckpt`
continues with the very next batch; DDP sharding is the sampler's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from deid.errors import DeidError
from deid.prep.manifest import MANIFEST, SETTINGS, read_json
from deid.prep.segmaps import SegmapEntry, read_segmap_manifest
from deid.sampling import identities_first
from deid.training import ResumableDataModule
from vqgan.data import SegmapCrops

log = logging.getLogger("vqgan.data")


class VqganDataModule(ResumableDataModule):
    """Person crops of `manifest_dir` for training; `val_split` crops (if any) for sample grids.

    `train_split`: entries of that split (null: every entry not in `val_split`).
    `preprocess` (a `conf/prep/segmaps.yaml`-shaped mapping with `data`) lets `prepare_data`
    build the manifest when it is missing, so `python train.py experiment=vqgan_demo_first`
    works on a fresh clone; without it a missing manifest is a one-line error naming the
    command. The number of labels is the manifest's (settings.json), unless given.
    """

    def __init__(
        self,
        manifest_dir: str,
        train_split: str | None = None,
        val_split: str | None = None,
        image_size: int = 256,
        batch_size: int = 8,
        num_workers: int = 2,
        hflip: float = 0.5,
        cache: bool = False,
        num_labels: int | None = None,
        seed: int = 0,
        num_samples: int = 8,
        preprocess: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.manifest_dir = Path(manifest_dir)
        self.train_split = train_split
        self.val_split = val_split
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.hflip = float(hflip)
        self.cache = bool(cache)
        self._num_labels = num_labels
        self.seed = int(seed)
        self.num_samples = int(num_samples)
        self.preprocess = dict(preprocess) if preprocess is not None else None
        self.train_set: SegmapCrops | None = None
        self.val_set: SegmapCrops | None = None
        self.persistent_workers = True

    # ------------------------------------------------------------------ data
    def prepare_data(self) -> None:
        if (self.manifest_dir / MANIFEST).is_file() or self.preprocess is None:
            return
        from deid.prep.segmaps import preprocess_segmaps

        log.warning("no manifest in %s: preprocessing the dataset first", self.manifest_dir)
        preprocess_segmaps(OmegaConf.create({**self.preprocess, "out": str(self.manifest_dir)}))

    def settings(self) -> dict[str, Any]:
        """The preprocessing folder's settings.json ({} when absent)."""
        return read_json(self.manifest_dir / SETTINGS) or {}

    @property
    def num_labels(self) -> int:
        if self._num_labels is not None:
            return int(self._num_labels)
        labels = self.settings().get("labels") or {}
        if "num_labels" not in labels:
            raise DeidError(
                f"{self.manifest_dir}/{SETTINGS}: no label settings (not a segmentation-map "
                "folder?); set datamodule.num_labels"
            )
        return int(labels["num_labels"])

    def _entries(self, entries: list[SegmapEntry], split: str | None, val: bool) -> list:
        if val or split is not None:
            chosen = [e for e in entries if e.split == split]
        else:
            chosen = [e for e in entries if self.val_split is None or e.split != self.val_split]
        if not chosen and not val:
            found = sorted({e.split for e in entries})
            raise DeidError(
                f"{self.manifest_dir}/{MANIFEST} has no persons to train on (train_split="
                f"{split}, val_split={self.val_split}; splits found: {', '.join(found) or 'none'})"
            )
        return chosen

    def _dataset(self, entries: list[SegmapEntry], hflip: float) -> SegmapCrops:
        return SegmapCrops(
            entries, self.manifest_dir, self.image_size, self.num_labels, hflip, self.cache
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        entries = read_segmap_manifest(self.manifest_dir)
        self.train_set = self._dataset(self._entries(entries, self.train_split, False), self.hflip)
        if self.val_split is not None:
            val = self._entries(entries, self.val_split, True)
            self.val_set = self._dataset(val, 0.0) if val else None

    def crop(self) -> dict[str, Any]:
        """How the crops and label maps were made (settings.json): what inference reproduces."""
        settings = self.settings()
        return {
            "kind": "segmaps",
            **dict(settings.get("crop") or {}),
            "labels": dict(settings.get("labels") or {}),
        }

    def module_kwargs(self) -> dict[str, Any]:
        """What every VQGAN module needs to know about the data (and records for inference)."""
        self.setup()
        return {
            "image_size": self.image_size,
            "num_labels": self.num_labels,
            "batch_size": self.batch_size,
            "crop": self.crop(),
        }

    def sample_batch(self) -> dict[str, torch.Tensor]:
        """A fixed, un-augmented batch for grids: the first `num_samples` crops of the
        validation split (the training split when there is none), one per identity first."""
        self.setup()
        source = self.val_set if self.val_set is not None else self.train_set
        assert source is not None
        picked = identities_first([e.identity for e in source.entries], self.num_samples)
        items = [source[i] for i in picked]
        return {
            key: torch.stack([item[key] for item in items]) for key in ("image", "labels", "mask")
        }
